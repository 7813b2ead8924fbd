#!/usr/bin/env bash
# meshctl filter test: match, no match, SNS's reasons for an invalid
# policy, bad input, --json. Needs no server.
# Usage: test_filter_cli.sh MESHCTL
set -u
MESHCTL=$1
. "$(dirname "$0")/tap.sh"
m() { "$MESHCTL" filter test "$@"; }

P='{"store":["example_corp"],"price_usd":[{"numeric":[">=",100]}]}'
A='{"store":{"DataType":"String","StringValue":"example_corp"},"price_usd":{"DataType":"Number","StringValue":"210.75"}}'

out=$(m --policy "$P" --attributes "$A"); r=$?
is "$r" 0 "a passing message exits 0"
is "$out" "match" "and prints match"

out=$(m --policy "$P" --attributes '{"store":{"DataType":"String","StringValue":"other"}}'); r=$?
is "$r" 0 "a filtered message exits 0 too"
is "$out" "no match" "and prints no match"

out=$(m --policy "$P" --attributes "$A" --json); r=$?
is "$r" 0 "--json exits 0"
is "$(printf '%s' "$out" | tr -d ' \n')" '{"Match":true}' '--json prints {"Match": true}'

out=$(m --json --policy "$P" --attributes '{}')
is "$(printf '%s' "$out" | tr -d ' \n')" '{"Match":false}' '--json prints {"Match": false}'

out=$(m --scope MessageBody --policy '{"object":{"key":[{"prefix":"auto-"}]}}' \
	--body '{"object":{"key":"auto-test"}}'); r=$?
is "$out $r" "match 0" "MessageBody scope with a nested policy"

# AWS: "exists": false needs at least one attribute; "exists": true a
# non-null, non-empty value.
X='{"store":[{"exists":false}]}'
is "$(m --policy "$X" --attributes '{}')" "no match" \
	"exists false: an empty set of attributes does not match"
is "$(m --policy "$X" --attributes '{"other":{"DataType":"String","StringValue":"x"}}')" \
	"match" "exists false: one other attribute does"
is "$(m --scope MessageBody --policy "$X" --body '{}')" "no match" \
	"exists false: nor an empty body"
is "$(m --scope MessageBody --policy '{"store":[{"exists":true}]}' --body '{"store":null}')" \
	"no match" "exists true: a null body value is none"

out=$(m --policy '{"object":{"key":["x"]}}' --attributes '{}' 2>&1); r=$?
is "$r" 2 "a nested policy in the default MessageAttributes scope exits 2"
has "$out" "Filter policy scope MessageAttributes does not support nested filter policy" \
	"with SNS's reason"

out=$(m --policy '{"price":[{"numeric":[">",3,"<",1]}]}' --attributes '{}' 2>&1); r=$?
is "$r" 2 "an invalid policy exits 2"
has "$out" "Invalid parameter: FilterPolicy: Bottom must be less than top" "with SNS's text"
has "$out" "key 'price', operator 'numeric'" "naming the key and operator"

out=$(m --policy "$P" --attributes '{"store":' 2>&1); r=$?
is "$r" 2 "--attributes that is not JSON exits 2"
has "$out" "--attributes" "naming the option"

out=$(m --policy "$P" --attributes '{"store":{"StringValue":"x"}}' 2>&1); r=$?
is "$r" 2 "an attribute without a DataType exits 2"
has "$out" "'store'" "naming the attribute"

out=$(m --scope MessageBody --policy '{"a":["b"]}' --body '{"a":' 2>&1); r=$?
is "$r" 2 "--body that is not JSON exits 2"
has "$out" "--body" "naming the option"

out=$(m --policy "$P" 2>&1); r=$?
is "$r" 2 "neither --attributes nor --body: usage error"

out=$(m --help); r=$?
is "$r" 0 "--help exits 0"
has "$out" "--policy JSON" "and lists the options"

done_testing
