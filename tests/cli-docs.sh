#!/bin/sh
# cli-docs.sh -- the man page and the bash completion follow --help.
#   LITEVAULT=path/to/litevault tests/cli-docs.sh OUTDIR
# Checks: docs/gen-man.sh builds litevault(1); it names every command and
# every --flag that any command's --help prints; bash completion offers the
# commands, the log/archive subcommands and a command's flags.
set -eu
bin=${LITEVAULT:?set LITEVAULT}
out=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
fail=0; pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "cli-docs: FAIL: $*"; fail=$((fail + 1)); }

man="$out/litevault.1"
"$top/docs/gen-man.sh" "$bin" "$man"
# The page as a reader sees its words: roff escapes for minus and backslash undone.
text=$(sed -e 's/\\-/-/g' -e 's/\\e/\\/g' -e 's/\\f[BIRP]//g' "$man")
cmds=$("$bin" --help | sed -n 's/^  \([a-z][a-z]*\)  .*/\1/p')
for c in $cmds; do
    echo "$text" | grep -qx "$c" && ok || bad "man page lacks command $c"
    [ "$c" = version ] && continue
    echo "$text" | grep -q "^\.SS \"litevault $c\"" && ok || bad "man page has no section for $c"
    for f in $("$bin" "$c" --help 2>&1 | grep -o -- '--[a-z][a-z-]*' | sort -u); do
        echo "$text" | grep -q -- "$f" && ok || bad "man page lacks $c $f"
    done
done

# Every option a command accepts is in its --help: each long option named in
# src/cli/ is tried on each command (from an empty directory, no config);
# one the command does not reject as unrecognized must be in its --help.
longopts=$(grep -oh '{"[a-z][a-z-]*", *[a-z_0-9]*, *[A-Za-z_0-9]*, *[A-Za-z_0-9'"'"']*}' "$top"/src/cli/*.c |
           sed 's/{"\([a-z-]*\)".*/\1/' | sort -u)
probe=$(mktemp -d)
for c in mount status "log ls" "log dump" "log replay" restore "archive ls" "archive verify" export import; do
    help=$("$bin" $c --help 2>&1)
    for f in $longopts; do
        out=$(cd "$probe" && timeout 20 "$bin" $c "--$f" </dev/null 2>&1 || true)
        case "$out" in *"unrecognized option"*) continue ;; esac
        echo "$help" | grep -q -- "--$f" && ok || bad "'litevault $c' accepts --$f but its --help does not say so"
    done
done
rm -rf "$probe"

complete_words() { # complete_words WORD... : what completion offers for the last word
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _litevault; printf "%s\n" "${COMPREPLY[@]}"' \
        x "$top/docs/litevault.bash-completion" "$@"
}
[ "$(complete_words "$bin" sta)" = status ] && ok || bad "completion of 'sta' is not status"
complete_words "$bin" log "" | grep -qx replay && ok || bad "completion lacks log replay"
complete_words "$bin" archive v | grep -qx verify && ok || bad "completion lacks archive verify"
complete_words "$bin" restore --ti | grep -qx -- --timestamp && ok || bad "completion lacks restore --timestamp"
complete_words "$bin" export --for | grep -qx -- --format && ok || bad "completion lacks export --format"
echo "cli-docs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
