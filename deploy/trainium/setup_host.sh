#!/usr/bin/env bash
# Set up a Trainium (trn1) host for Annapurna: Neuron SDK 2.29, two virtual environments, the
# executor service. Run as root on Ubuntu 22.04 (jammy) or 24.04 (noble), from a checkout of the
# repository:  sudo ANNAPURNA_S3_CACHE=s3://my-bucket/neuron-cache deploy/trainium/setup_host.sh
#
# Two venvs, because the two halves need different torch builds:
#   /opt/annapurna/venv         the executor (annapurna's neuron_step, boto3, httpx; no torch needed)
#   /opt/annapurna/neuron-venv  what generated programs run with: torch 2.9 + torch-neuronx 2.9 +
#                               torch-xla 2.9 from the Neuron pip repository, never PyPI (PyPI's
#                               `torch-neuronx` is a placeholder).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX=/opt/annapurna
STATE_DIR=/var/lib/annapurna
NEURON_PIP_INDEX=https://pip.repos.neuron.amazonaws.com
. /etc/os-release

# Neuron SDK 2.29.0 (04/2026) component versions, from its release content for Trn1.
NEURON_DKMS=2.27.4.0
NEURON_RUNTIME=2.31.24.0
NEURON_COLLECTIVES=2.31.24.0
NEURON_TOOLS=2.29.18.0
TORCH_NEURONX='torch-neuronx==2.9.0.2.13.*'
TORCH_XLA='torch-xla==2.9.*'
TORCH='torch==2.9.*'
NEURONX_CC='neuronx-cc==2.24.5133.0'

echo "== apt: Neuron repository, driver, runtime, tools; bubblewrap for the sandbox"
install -d -m 0755 /etc/apt/keyrings
curl -fsSL https://apt.repos.neuron.amazonaws.com/GPG-PUB-KEY-AMAZON-AWS-NEURON.PUB \
  | gpg --dearmor -o /etc/apt/keyrings/neuron.gpg
echo "deb [signed-by=/etc/apt/keyrings/neuron.gpg] https://apt.repos.neuron.amazonaws.com ${VERSION_CODENAME} main" \
  > /etc/apt/sources.list.d/neuron.list
apt-get update
apt-get install -y "linux-headers-$(uname -r)" git python3-venv python3-pip bubblewrap
apt-get install -y --allow-change-held-packages \
  "aws-neuronx-dkms=${NEURON_DKMS}*" \
  "aws-neuronx-runtime-lib=${NEURON_RUNTIME}*" \
  "aws-neuronx-collectives=${NEURON_COLLECTIVES}*" \
  "aws-neuronx-tools=${NEURON_TOOLS}*"
apt-mark hold aws-neuronx-dkms aws-neuronx-runtime-lib aws-neuronx-collectives aws-neuronx-tools

echo "== the programs' venv (Neuron's torch)"
python3 -m venv "$PREFIX/neuron-venv"
"$PREFIX/neuron-venv/bin/pip" install -U pip
"$PREFIX/neuron-venv/bin/pip" install --extra-index-url "$NEURON_PIP_INDEX" \
  "$NEURONX_CC" "$TORCH_NEURONX" "$TORCH_XLA" "$TORCH" \
  'numpy>=1.26' 'dagster-pipes==1.13.27' 'matplotlib>=3.8'
# Refuse PyPI's placeholder: the real package brings the torch_neuronx module.
"$PREFIX/neuron-venv/bin/python" -c "import torch_neuronx, torch_xla; print('torch-xla', torch_xla.__version__)"

echo "== the executor's venv (no torch: it only moves bundles and runs the sandbox)"
python3 -m venv "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install -U pip
"$PREFIX/venv/bin/pip" install --no-deps "$REPO_DIR"
"$PREFIX/venv/bin/pip" install 'dagster-pipes==1.13.27' 'boto3>=1.34' 'httpx>=0.27' 'numpy>=1.26'

echo "== service user, state, token, unit"
id annapurna >/dev/null 2>&1 || useradd --system --home-dir "$STATE_DIR" --shell /usr/sbin/nologin annapurna
usermod -aG neuron annapurna 2>/dev/null || true   # /dev/neuron* group, where the driver made one
install -d -o annapurna -g annapurna -m 0750 "$STATE_DIR" "$STATE_DIR/executor" "$STATE_DIR/jobs" "$STATE_DIR/datasets" "$STATE_DIR/neuron-cache"
install -d -m 0755 /etc/annapurna
if [ ! -s /etc/annapurna/executor.token ]; then
  umask 077; head -c 32 /dev/urandom | base64 | tr -d '\n=+/' > /etc/annapurna/executor.token
fi
chown root:annapurna /etc/annapurna/executor.token && chmod 0640 /etc/annapurna/executor.token
if [ ! -f /etc/annapurna/executor.env ]; then
  sed "s#@NEURON_COMPILE_CACHE_URL@#${ANNAPURNA_S3_CACHE:-s3://papers-test-outputs/neuron-compile-cache}#" \
    "$REPO_DIR/deploy/trainium/executor.env" > /etc/annapurna/executor.env
fi
install -m 0644 "$REPO_DIR/deploy/trainium/annapurna-executor.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now annapurna-executor.service

echo "== check"
/opt/aws/neuron/bin/neuron-ls || true
sleep 2
curl -fsS http://127.0.0.1:8000/health && echo
echo "token for the orchestrator (ANNAPURNA_EXECUTOR_TOKEN): /etc/annapurna/executor.token"
