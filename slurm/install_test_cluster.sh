#!/usr/bin/env bash
# Install the packages of the single-node SLURM test cluster (Debian/Ubuntu, run as root).
#
# Idempotent: does nothing when slurmctld, slurmd, slurmdbd, munged and mariadbd are already installed.
# Installs slurm-wlm (22.05 on Debian 12), slurmdbd, munge and mariadb-server without starting any service;
# `slurm/start_test_cluster.sh` writes the configuration and starts the daemons.
set -euo pipefail

need=()
for bin in slurmctld slurmd slurmdbd munged mariadbd sbatch sacct; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need+=("$bin")
done
if [ "${#need[@]}" -eq 0 ]; then
    echo "install_test_cluster: slurm, slurmdbd, munge and mariadb already installed"
    exit 0
fi
echo "install_test_cluster: missing ${need[*]}; installing packages"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# A policy-rc.d answering 101 keeps the packages' postinst scripts from starting daemons (with
# the distribution's configuration); start_test_cluster.sh starts them with ours.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d > /dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm slurmdbd munge mariadb-server mariadb-client
echo "install_test_cluster: done"
