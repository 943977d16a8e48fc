#!/usr/bin/env bash
# `make demo`: Roster plus an emulated Entra ID tenant (10,000 users), so anyone can try it without Azure.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${DEMO_USERS:-10000}
NGROUPS=${DEMO_GROUPS:-400}
MEMBERSHIPS=${DEMO_MEMBERSHIPS:-30000}
EMU_BIND=${DEMO_EMULATOR_BIND:-127.0.0.1:8081}
TENANT=3f6b2c1e-8d4a-4b7e-9c2d-5a1e0f9b7c31
CLIENT=9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
SECRET=demo-client-secret~RosterDemo

cargo build --release --locked --workspace
./target/release/graph-emulator --bind "$EMU_BIND" --users "$USERS" --groups "$NGROUPS" --memberships "$MEMBERSHIPS" \
  --seed 1 --tenant-id "$TENANT" --tenant-domain contoso.example --client-id "$CLIENT" --client-secret "$SECRET" &
EMU_PID=$!
trap 'kill $EMU_PID 2>/dev/null || true' EXIT
cat <<MSG

=== Roster demo ===
An emulated Entra ID tenant with $USERS users runs at http://$EMU_BIND.
1. Open the setup link printed below, create your admin account.
2. Go to Admin > Microsoft Azure > Entra ID User Source and enter:
     Entra ID Name            Contoso (demo)
     Directory (tenant) ID    $TENANT
     Application (client) ID  $CLIENT
     Client secret            $SECRET
     Cloud                    Custom
     Authority URL            http://$EMU_BIND
     Graph URL                http://$EMU_BIND
   tick "Enable this Entra ID", press Test connection, then Save.
3. Open Sync: the first round starts by itself; watch it, then browse Users and Groups.
Data lives in ${ROSTER_DATA_DIR:-data-demo}. Stop with Ctrl-C.

MSG
ROSTER_DATA_DIR=${ROSTER_DATA_DIR:-data-demo} ./target/release/roster serve
