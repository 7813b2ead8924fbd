#!/usr/bin/env bash
# meshctl param ...: put, get (by version, with decryption), list by path,
# history, delete, each with --json; every refusal named, exit non-zero,
# nothing stored; a SecureString is never in clear in the bucket.
# Usage: test_param_cli.sh MESHCTL TEST-BROKER IDENTITY-WRITER
set -u
MESHCTL=$1
TEST_BROKER=$2
IDENTITY_WRITER=$3
. "$(dirname "$0")/tap.sh"
unset NATS_URL NATS_USER NATS_PASSWORD NATS_TOKEN NATS_NKEY NATS_CREDS \
	MESH_IDENTITY MESH_IDENTITY_NAME

start_broker || { echo "Bail out! no broker"; exit 1; }
scratch
export NATS_URL=$BROKER_URL
m() { "$MESHCTL" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
count() { m param list --recursive --json | json 'len(d["Parameters"])'; }
# refused WANT-EXIT MESSAGE DESCRIPTION -- ARGS: exit code and message,
# and nothing stored.
refused() {
	local want=$1 msg=$2 what=$3 before out rc
	shift 4
	before=$(count)
	out=$(m "$@" 2>&1 </dev/null); rc=$?
	is "$rc" "$want" "$what: exit $want"
	has "$out" "$msg" "$what: says so"
	is "$(count)" "$before" "$what: nothing stored"
}

for who in admin orders billing; do
	"$IDENTITY_WRITER" "$BROKER_URL" "$who" "$tmp/$who.nk" || echo "Bail out! identity $who"
done

# Strings: versions, overwrite, get by version.
out=$(m param put /shop/orders/discount 10 --description "percent off"); ok $? "put a String"
is "$out" "stored parameter '/shop/orders/discount' (String) version 1" "version 1"
is "$(m param get /shop/orders/discount)" 10 "get prints the value"
refused 1 "'/shop/orders/discount' exists" "put again without --overwrite" -- param put /shop/orders/discount 15
is "$(m param put /shop/orders/discount 15 --overwrite --json | json 'd["Version"]')" 2 "--overwrite: version 2 (--json)"
is "$(m param get /shop/orders/discount)" 15 "get: the last version"
is "$(m param get /shop/orders/discount:1)" 10 "get NAME:1: the first"
out=$(m param get /shop/orders/discount:7 2>&1); is $? 1 "get NAME:7: exit 1"
has "$out" "no version 7 (versions kept: 1-2)" "saying which are kept"
out=$(m param get /shop/orders/discount:x 2>&1); is $? 2 "get NAME:x: exit 2"
has "$out" "the version after ':' must be a number" "saying so"
g=$(m param get /shop/orders/discount --json)
is "$(printf '%s' "$g" | json 'd["Parameter"]["Value"], d["Parameter"]["Version"], d["Parameter"]["Type"]')" "('15', 2, 'String')" "--json: get-parameter's shape"
has "$g" '"LastModifiedDate"' "with its date"
has "$(m param history /shop/orders/discount)" "      1  String" "history lists version 1"
is "$(m param history /shop/orders/discount --json | json '[p["Value"] for p in d["Parameters"]]')" "['10', '15']" "history --json: both, oldest first"
out=$(m param get /nothing 2>&1); is $? 1 "get an unknown one: exit 1"
has "$out" "parameter '/nothing': does not exist" "naming it"

# Refusals.
refused 2 "must begin with '/'" "a hierarchy without '/'" -- param put a/b x
refused 2 "an empty level" "an empty level" -- param put /a//b x
refused 2 "\"aws\" or \"ssm\"" "a reserved prefix" -- param put /aws/x 1
refused 2 "may contain only" "a character out of the set" -- param put '/a b' 1
refused 2 "a value of 0 bytes" "an empty value" -- param put /x ""
refused 2 "StringList item 2 is empty" "a StringList with an empty item" -- param put /x a,,b --type StringList
refused 2 "type 'Number'" "an unknown type" -- param put /x 1 --type Number
refused 2 "readers are for SecureString" "--readers on a String" -- param put /x 1 --readers orders
refused 2 "VALUE or on standard input" "no value" -- param put /x
refused 2 "VALUE or on standard input" "a value and --stdin" -- param put /x 1 --stdin
refused 2 "a SecureString needs an identity" "a SecureString without --as" -- param put /x 1 --type SecureString
refused 1 "reader 'nobody'" "an unknown reader" -- param put /x s3 --type SecureString --readers orders,nobody --as admin --seed "$tmp/admin.nk"
refused 1 "$tmp/none.nk" "a missing seed file" -- param put /x s3 --type SecureString --as admin --seed "$tmp/none.nk"
chmod 644 "$tmp/billing.nk"
refused 2 "chmod 600" "a seed readable by others" -- param put /x s3 --type SecureString --as billing --seed "$tmp/billing.nk"
chmod 600 "$tmp/billing.nk"

# SecureStrings: the value from standard input, never in clear.
secret="correct-Horse-b4ttery-$$"
out=$(printf '%s\n' "$secret" | m param put /shop/db/password --stdin --type SecureString --readers orders --as admin --seed "$tmp/admin.nk"); ok $? "put a SecureString from --stdin"
has "$out" "(SecureString) version 1" "version 1"
is "$(m param get /shop/db/password)" "(secure; 2 readers)" "get without decryption: (secure; 2 readers)"
is "$(m param get /shop/db/password --with-decryption --as orders --seed "$tmp/orders.nk")" "$secret" "a reader decrypts it"
is "$(MESH_IDENTITY=$tmp/admin.nk MESH_IDENTITY_NAME=admin m param get /shop/db/password --with-decryption)" "$secret" "so does its writer (identity from the environment)"
out=$(m param get /shop/db/password --with-decryption --as billing --seed "$tmp/billing.nk" 2>&1); is $? 1 "billing (not a reader): exit 1"
has "$out" "'billing' is not a reader" "saying so"
case "$out" in *"$secret"*) ok 1 "and not printing it" ;; *) ok 0 "and not printing it" ;; esac
out=$(m param get /shop/db/password --with-decryption 2>&1); is $? 2 "--with-decryption without an identity: exit 2"
is "$(m param get /shop/db/password --json | json 'd["Parameter"]["Readers"]')" "['admin', 'orders']" "--json names its readers"
raw=$(python3 - "$BROKER_URL" <<'PY'
import base64, socket, sys, json
host, port = sys.argv[1][len("nats://"):].split(":")
s = socket.create_connection((host, int(port)))
f = s.makefile("rb")
f.readline()
out = b""
s.sendall(b'CONNECT {"verbose":false,"headers":true,"no_responders":true}\r\nSUB _r 1\r\n')
for seq in range(1, 200):
    req = json.dumps({"seq": seq}).encode()
    s.sendall(b"PUB $JS.API.STREAM.MSG.GET.KV_MESH_PARAMS _r %d\r\n%s\r\n" % (len(req), req))
    while True:
        line = f.readline()
        if line.startswith(b"MSG") or line.startswith(b"HMSG"):
            n = int(line.split()[-1])
            body = f.read(n + 2)
            break
    msg = json.loads(body).get("message")
    if msg is None:
        break
    out += msg["subject"].encode() + b" " + base64.b64decode(msg.get("data", "")) + b"\n"
print(out.decode())
PY
)
has "$raw" "shop.db.password" "the bucket's raw messages read"
has "$raw" '"value":"15"' "a String's value is there in clear"
has "$raw" '"ciphertext"' "the secret's record is there"
case "$raw" in *"$secret"*) ok 1 "a secure parameter is not in clear in the bucket" ;; *) ok 0 "a secure parameter is not in clear in the bucket" ;; esac
for f in $(grep -rl "shop.db.password" "$BROKER_DIR" 2>/dev/null); do
	grep -q "$secret" "$f" && { ok 1 "the secret is not in the server's file $f"; }
done
ok 0 "the server's files searched for the secret"

# Lists and delete.
m param put /shop/orders/limit a,b,c --type StringList >/dev/null
m param put top t >/dev/null
out=$(m param list /shop/orders); ok $? "list /shop/orders"
has "$out" "/shop/orders/limit" "its children"
has "$out" "StringList" "with their types"
is "$(m param list /shop --json | json 'len(d["Parameters"])')" 0 "list /shop: no child"
is "$(m param list /shop --recursive --json | json 'sorted(p["Name"] for p in d["Parameters"])')" \
	"['/shop/db/password', '/shop/orders/discount', '/shop/orders/limit']" "list /shop --recursive: all three"
is "$(m param list --json | json 'len(d["Parameters"])')" 4 "list: all four"
refused 2 "must be \"/\" or begin with '/'" "a path without '/'" -- param list shop
is "$(m param delete top --json | json 'd["DeletedParameters"]')" "['top']" "delete --json"
out=$(m param delete top 2>&1); is $? 1 "delete again: exit 1"
has "$out" "parameter 'top': does not exist" "saying so"
out=$(m param delete /shop/db/password); ok $? "delete the secret"
has "$out" "deleted parameter '/shop/db/password'" "saying so"
out=$(m param history /shop/db/password 2>&1); is $? 1 "its history is gone"

done_testing
