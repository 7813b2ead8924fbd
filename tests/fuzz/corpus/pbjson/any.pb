
(type.googleapis.com/evmesh.example.Greet
ada