# Sourced by the CPU bench scripts: machine_header TEXT prints the header their raw.txt starts with:
# the time, the CPU model, its native bf16 instructions (or none) and TEXT (commits, settings).
machine_header() {
  local bf16
  bf16=$(grep -o 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | xargs)
  echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "# native bf16: ${bf16:-none}"
  echo "# $1"
}
