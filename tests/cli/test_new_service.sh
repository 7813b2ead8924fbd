#!/usr/bin/env bash
# meshctl new service: the scaffold it writes, what it refuses, and that
# the scaffold builds: in a copy of the source tree, `meshctl new service
# demo`, then meson and ninja build services/demo with the project's own
# flags (-Wall -Wextra -Werror).
# Usage: test_new_service.sh MESHCTL SOURCE-ROOT [SANITIZE]
# The build of the copy is left out when SANITIZE is not "none": it proves
# nothing more under ASan, and the plain build runs it.
set -u
MESHCTL=$1
SRC=$2
SANITIZE=${3:-none}
. "$(dirname "$0")/tap.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The tree without build folders (any folder holding build.ninja), .git
# and var/.
tar -C "$SRC" --exclude=./.git --exclude=./var --exclude-tag-all=build.ninja \
	-cf - . | tar -C "$tmp" -xf -
ok $? "a copy of the source tree"
cd "$tmp" || exit 1

out=$("$MESHCTL" new service demo); ok $? "new service demo exits 0"
has "$out" "made service 'demo' in services/demo (main.c, meson.build); added it to services/meson.build" \
	"and says what it made"
[ -f services/demo/main.c ] && [ -f services/demo/meson.build ]; ok $? "services/demo holds main.c and meson.build"
grep -q 'mesh_service_new("demo"' services/demo/main.c; ok $? "main.c declares the service demo"
! grep -q '@NAME@' services/demo/main.c services/demo/meson.build; ok $? "no placeholder is left"
is "$(grep -c "^subdir('demo')$" services/meson.build)" 1 "services/meson.build builds it"

out=$("$MESHCTL" new service demo 2>&1); is $? 1 "making it again exits 1"
has "$out" "services/demo already exists: not touched" "and says why"
rm -rf services/demo
"$MESHCTL" new service demo >/dev/null; ok $? "after removing the folder, it makes it again"
is "$(grep -c "^subdir('demo')$" services/meson.build)" 1 "without a second subdir('demo')"
out=$("$MESHCTL" new service 'no/way' 2>&1); is $? 2 "a malformed name is a usage error"
out=$("$MESHCTL" new service other --dir nowhere 2>&1); is $? 1 "a --dir without meson.build exits 1"
has "$out" "nowhere/meson.build" "and names it"
[ ! -e nowhere/other ]; ok $? "and makes nothing"
mkdir -p alt && printf "# services\n" >alt/meson.build
out=$("$MESHCTL" new service other --dir alt 2>&1); is $? 1 "a --dir without a template exits 1"
has "$out" "alt/template/main.c.in" "and names the file"
[ ! -e alt/other ]; ok $? "and leaves nothing half made"
printf "# no newline at the end" >alt/meson.build
"$MESHCTL" new service other --dir alt --template services/template >/dev/null
ok $? "--template names the template"
is "$(tail -n 1 alt/meson.build)" "subdir('other')" "subdir() goes on a line of its own"

if [ "$SANITIZE" != none ]; then
	echo "# skipping the build of the scaffold under -Db_sanitize=$SANITIZE: the plain build runs it"
elif ! meson setup b >setup.log 2>&1; then
	ok 1 "meson setup takes the tree with services/demo"
	sed 's/^/# /' setup.log | tail -20
else
	ok 0 "meson setup takes the tree with services/demo"
	ninja -C b -j2 services/demo/demo >ninja.log 2>&1; r=$?
	ok $r "services/demo/demo builds with -Wall -Wextra -Werror"
	[ $r -eq 0 ] || sed 's/^/# /' ninja.log | tail -30
	out=$(b/services/demo/demo --help 2>&1); ok $? "and runs: demo --help exits 0"
	has "$out" "demo" "and names the service"
fi
done_testing
