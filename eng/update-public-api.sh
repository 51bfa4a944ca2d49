#!/usr/bin/env bash
# Rewrites PublicAPI.Unshipped.txt of the shipped projects (src/*/) from what the compiler sees, since there is no
# IDE code fix here. Builds the projects once with the PublicApiAnalyzers' diagnostics logged as SARIF
# (src/Directory.Build.props), then for each project:
#   RS0016 (public symbol not declared)          -> its line is added to PublicAPI.Unshipped.txt
#   RS0017 (declared symbol gone or not public)  -> removed from Unshipped, or, if it was shipped, "*REMOVED*<line>"
# A project without the two files gets them (each starts with "#nullable enable"), so a new project under src/
# needs nothing else. Review the diff of the .txt files like code: it is the change to the public API.
#
#   eng/update-public-api.sh [--ship] [PROJECT_DIR...]     (default: every project under src/)
#   --ship   afterwards moves Unshipped into Shipped (a release; also how the first baseline was made)
# Needs dotnet and python3.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ship=false
dirs=()
for arg in "$@"; do
  case "$arg" in
    --ship) ship=true ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) dirs+=("$(cd "$arg" && pwd)") ;;
  esac
done
if [ ${#dirs[@]} -eq 0 ]; then
  while IFS= read -r p; do dirs+=("$(dirname "$p")"); done < <(find "$root/src" -name '*.csproj' -not -path '*/bin/*' -not -path '*/obj/*' | sort)
fi

log="$(mktemp -d)"
trap 'rm -rf "$log"' EXIT
slnx="$log/publicapi.slnx"
{
  echo "<Solution>"
  for d in "${dirs[@]}"; do
    for f in PublicAPI.Shipped.txt PublicAPI.Unshipped.txt; do
      [ -f "$d/$f" ] || { printf '#nullable enable\n' > "$d/$f"; echo "created ${d#"$root"/}/$f" >&2; }
    done
    for p in "$d"/*.csproj; do echo "  <Project Path=\"$p\" />"; done
  done
  echo "</Solution>"
} > "$slnx"

echo "building ${#dirs[@]} project(s) to collect RS0016/RS0017..." >&2
# --no-incremental: an up-to-date project would not run the compiler, and so report nothing.
dotnet build "$slnx" -c Release --no-incremental -nologo -v quiet -clp:NoSummary \
  -p:TreatWarningsAsErrors=false -p:PublicApiErrorLog="$log" >"$log/build.txt" 2>&1 || {
  # The API diagnostics are warnings here; a failure is something else (a compile error): show it.
  grep -E ' error ' "$log/build.txt" | grep -v -E 'RS00(16|17)' | sort -u >&2 || true
  echo "update-public-api: the build failed; fix it and run again" >&2
  exit 1
}

python3 - "$ship" "$log" "${dirs[@]}" <<'PY'
import glob, json, os, re, sys

ship, log, dirs = sys.argv[1] == "true", sys.argv[2], sys.argv[3:]
HEADER = "#nullable enable"
REMOVED = "*REMOVED*"

def read(path):
    with open(path, encoding="utf-8-sig") as f:
        return [l.rstrip("\r\n") for l in f if l.strip() and l.strip() != HEADER]

def write(path, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join([HEADER] + sorted(set(lines), key=lambda l: (l.removeprefix(REMOVED), l))) + "\n")

# Diagnostics per project directory, from every SARIF log of the build.
found = {}
for sarif in glob.glob(os.path.join(log, "*.sarif")):
    with open(sarif, encoding="utf-8-sig") as f:
        data = json.load(f)
    for run in data.get("runs", []):
        for result in run.get("results", []):
            rule = result.get("ruleId")
            if rule not in ("RS0016", "RS0017"):
                continue
            uris = [l["physicalLocation"]["artifactLocation"]["uri"] for l in result.get("locations", []) if "physicalLocation" in l]
            props = result.get("properties", {}).get("customProperties", {})
            found.setdefault(os.path.basename(sarif)[: -len(".sarif")], []).append((rule, result["message"]["text"], props, uris))

for d in dirs:
    name = os.path.splitext(os.path.basename(glob.glob(os.path.join(d, "*.csproj"))[0]))[0]
    shipped_path, unshipped_path = os.path.join(d, "PublicAPI.Shipped.txt"), os.path.join(d, "PublicAPI.Unshipped.txt")
    shipped, unshipped = read(shipped_path), read(unshipped_path)
    added = removed = 0
    for rule, text, props, uris in found.get(name, []):
        if rule == "RS0016":
            line = props.get("APIName")
            if not line:
                sys.exit(f"update-public-api: RS0016 without an API name in {name}: {text}")
            siblings = [s for s in props.get("ApiNamesOfSiblingsToRemove", "").split(";;") if s]
            unshipped = [l for l in unshipped if l not in siblings]
            if line not in unshipped and line not in shipped:
                unshipped.append(line)
                added += 1
        else:  # RS0017: "Symbol '<line>' is part of the declared API, but is either not public or could not be found"
            m = re.match(r"Symbol '(.*)' is part of the declared API", text)
            if not m:
                sys.exit(f"update-public-api: cannot read RS0017 in {name}: {text}")
            line = m.group(1)
            if line in unshipped:
                unshipped.remove(line)
            elif line in shipped and REMOVED + line not in unshipped:
                unshipped.append(REMOVED + line)
            removed += 1
    if ship:
        gone = {l[len(REMOVED):] for l in unshipped if l.startswith(REMOVED)}
        shipped = [l for l in shipped if l not in gone] + [l for l in unshipped if not l.startswith(REMOVED)]
        unshipped = []
    write(shipped_path, shipped)
    write(unshipped_path, unshipped)
    print(f"{os.path.relpath(d)}: +{added} -{removed}; Shipped {len(set(shipped))} lines, Unshipped {len(set(unshipped))} lines")
PY
