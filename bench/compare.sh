#!/usr/bin/env bash
# Before/after comparison of `pserver bench kv` in one run: builds two revisions (or takes two pserver.dll paths),
# runs them alternately (A B A B ...) so that noise from the machine hits both alike, and prints per case the
# median GB/s, requests/s and p50 latency of each and the after/before ratios. Needs jq.
#   bench/compare.sh BEFORE AFTER [ROUNDS] [-- bench kv options]
#   bench/compare.sh f8d0297 HEAD 3 -- --sizes 64KB,1MB --window 1,8
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
before=$1; after=$2; shift 2
rounds=3
if [ $# -gt 0 ] && [ "$1" != "--" ]; then rounds=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
work="$(mktemp -d)"

dll() { # REV|PATH.dll NAME -> path of a pserver.dll
  if [[ "$1" == *.dll ]]; then echo "$1"; return; fi
  mkdir -p "$work/$2/src"
  git -C "$root" archive "$1" | tar -x -C "$work/$2/src"
  echo "compare: building $1 ($2)" >&2
  dotnet build "$work/$2/src/src/ParameterServer.Cli/ParameterServer.Cli.csproj" -c Release -o "$work/$2/bin" -nologo -v quiet -clp:NoSummary >&2
  echo "$work/$2/bin/pserver.dll"
}
a=$(dll "$before" before)
b=$(dll "$after" after)
for r in $(seq "$rounds"); do
  for side in before after; do
    d=$a; [ $side = after ] && d=$b
    echo "compare: round $r, $side" >&2
    dotnet "$d" bench kv --json "$@" > "$work/$side.$r.jsonl"
  done
done
jq -rs --arg before "$before" --arg after "$after" '
  def median: sort | .[(length / 2 | floor)];
  def stats(side): map(select(.side == side)) | {gbps: (map(.gbps) | median), rps: (map(.requests_per_sec) | median),
    p50: (map(.p50_us) | median), frac: (map(.fraction_of_limit) | median), limit: (map(.limit_gbps) | median)};
  group_by([.op, .size_bytes, .window]) | sort_by(.[0].op == "rtt", .[0].size_bytes, .[0].window, .[0].op)
  | (["op", "size", "window", "GB/s before", "GB/s after", "ratio", "of limit", "req/s before", "req/s after", "ratio", "p50 us before", "p50 us after"] | @tsv),
    (.[] | (stats("before")) as $x | (stats("after")) as $y
      | [.[0].op, .[0].size_bytes, .[0].window, ($x.gbps * 1000 | round / 1000), ($y.gbps * 1000 | round / 1000),
         (if $x.gbps > 0 then ($y.gbps / $x.gbps * 100 | round / 100) else "-" end), ($y.frac * 100 | round / 100),
         ($x.rps | round), ($y.rps | round), (if $x.rps > 0 then ($y.rps / $x.rps * 100 | round / 100) else "-" end),
         $x.p50, $y.p50] | @tsv)
' <(for f in "$work"/before.*.jsonl; do jq -c '. + {side: "before"}' "$f"; done; for f in "$work"/after.*.jsonl; do jq -c '. + {side: "after"}' "$f"; done) | column -t -s $'\t'
echo "compare: raw lines in $work" >&2
