/* evmesh: the whole public API of the broker-adapters library. */
#ifndef MESH_MESH_H
#define MESH_MESH_H

#include "mesh/version.h"

#include "mesh/conn.h"
#include "mesh/err.h"
#include "mesh/event.h"
#include "mesh/filter.h"
#include "mesh/function.h"
#include "mesh/lease.h"
#include "mesh/partition.h"
#include "mesh/pbjson.h"
#include "mesh/queue.h"
#include "mesh/route.h"
#include "mesh/router.h"
#include "mesh/sender.h"
#include "mesh/source.h"
#include "mesh/subscription.h"
#include "mesh/topic.h"
#include "mesh/wire.h"

#endif
