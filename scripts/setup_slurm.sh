#!/usr/bin/env bash
# Install what the one-machine Slurm cluster (src/parsl_saga/slurm_cluster.py) needs:
# Debian's slurmctld, slurmd and slurm-client (sbatch, sinfo, ...) and munge.
#
# Idempotent: when every tool is already on PATH it changes nothing. It installs only as
# root, with apt-get, non-interactively, and never enables or starts a service: the
# cluster runs its daemons itself, as child processes with their own configuration.
#
#   scripts/setup_slurm.sh          install what is missing (root), or say what is missing
#   scripts/setup_slurm.sh --check  exit 0 when installed, 1 (with the reason) otherwise
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client munge)
TOOLS=(slurmctld slurmd sbatch sinfo scontrol scancel squeue munged mungekey)

missing_tools() {
  local tool
  for tool in "${TOOLS[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || printf '%s ' "$tool"
  done
}

missing=$(missing_tools)
if [[ -z "$missing" ]]; then
  echo "setup_slurm: Slurm and munge are installed ($(slurmd -V 2>/dev/null || echo slurmd))"
  exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
  echo "setup_slurm: missing ${missing% }; run scripts/setup_slurm.sh as root to install them" >&2
  exit 1
fi
if [[ "$(id -u)" != 0 ]]; then
  echo "setup_slurm: missing ${missing% }; installing needs root:" \
       "run \`sudo scripts/setup_slurm.sh\` (or apt-get install ${PACKAGES[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup_slurm: missing ${missing% }, and there is no apt-get to install" \
       "${PACKAGES[*]} with; install Slurm 22.05+ and munge with this system's package manager" >&2
  exit 1
fi

echo "setup_slurm: installing ${PACKAGES[*]} (missing: ${missing% })"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d exit code 101 tells Debian's maintainer scripts not to start services;
# without it they would try to start munge and slurmd through invoke-rc.d. Only a
# policy file this script wrote is removed again.
policy=/usr/sbin/policy-rc.d
own_policy=
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [[ -n "$own_policy" ]]; then rm -f "$policy"; fi; }
trap cleanup EXIT

# An index older than the package pool fails with 404s: update once, then install.
if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; then
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

missing=$(missing_tools)
if [[ -n "$missing" ]]; then
  echo "setup_slurm: installed ${PACKAGES[*]} but still missing ${missing% } on PATH" >&2
  exit 1
fi
echo "setup_slurm: installed $(slurmd -V)"
