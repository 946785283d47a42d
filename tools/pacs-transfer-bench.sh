#!/usr/bin/env bash
# Transfer time of TG119 (129 CT slices + RTSTRUCT, 7.4 MB) each way between rtopt and a
# local Orthanc on the loopback (docs/benchmarks.md, "DICOM transfer"): starts Orthanc with
# a generated configuration in a temp folder (as tests/pacs.rs does), runs `rtopt push` and
# `rtopt pull` RUNS times each, prints the seconds rtopt reports, and kills Orthanc (by its
# pid) on exit whatever happens. TCP_NODELAY=0 runs Orthanc without TCP_NODELAY; TLS=1 runs
# both sides with DICOM TLS (test certificates made by openssl, required both ways).
# Usage: tools/pacs-transfer-bench.sh [RUNS]   (needs target/release/rtopt and Orthanc)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
rtopt="${RTOPT:-target/release/rtopt}"
orthanc="$(command -v Orthanc || echo /usr/sbin/Orthanc)"
work="$(mktemp -d)"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dport="$(port)"
tls_orthanc=""
tls_rtopt=""
if [ "${TLS:-0}" = 1 ]; then
  (cd "$work"
   openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=bench CA" 2>/dev/null
   printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' > ext.cnf
   for n in orthanc rtopt; do
     openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj "/CN=$n" 2>/dev/null
     openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 2 -extfile ext.cnf 2>/dev/null
   done)
  tls_orthanc="\"DicomTlsEnabled\": true, \"DicomTlsCertificate\": \"$work/orthanc.crt\", \"DicomTlsPrivateKey\": \"$work/orthanc.key\", \"DicomTlsTrustedCertificates\": \"$work/ca.crt\", \"DicomTlsRemoteCertificateRequired\": true,"
  tls_rtopt="$(printf '[tls]\ncertificate = "%s"\nprivate_key = "%s"\ntrusted = "%s"\n' "$work/rtopt.crt" "$work/rtopt.key" "$work/ca.crt")"
fi
cat > "$work/orthanc.json" <<JSON
{ "Name": "rtopt-bench", "StorageDirectory": "$work/storage", "IndexDirectory": "$work/storage",
  "DicomAet": "ORTHANC", "DicomPort": $dport, "HttpServerEnabled": false, "HttpPort": $(port),
  "RemoteAccessAllowed": false, "DicomCheckCalledAet": true, "DicomAlwaysAllowStore": false,
  "DicomAlwaysAllowFind": false, "DicomAlwaysAllowGet": false, "DicomAlwaysAllowMove": false,
  "DicomModalities": { "rtopt": ["RTOPT", "127.0.0.1", $(port)] },
  $tls_orthanc "SyncStorageArea": false, "Plugins": [] }
JSON
printf '[local]\nae_title = "RTOPT"\n[nodes.pacs]\nae_title = "ORTHANC"\nhost = "127.0.0.1"\nport = %s\n%s\n' "$dport" "$tls_rtopt" > "$work/net.toml"
TCP_NODELAY="${TCP_NODELAY:-1}" "$orthanc" "$work/orthanc.json" > "$work/orthanc.log" 2>&1 &
opid=$!
trap 'kill "$opid" 2>/dev/null; wait "$opid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$dport") 2>/dev/null && break; sleep 0.1; done
study=2.25.98384215349240921989320549991266716103653971269191017892415
for i in $(seq "$runs"); do
  push=$("$rtopt" push --config "$work/net.toml" --node pacs data/tg119 | tail -n 1)
  pull=$("$rtopt" pull --config "$work/net.toml" --node pacs --study-uid "$study" --out "$work/pull$i")
  echo "run $i push: ${push##*bytes in } | pull: $(sed -E 's/.*bytes in ([0-9.]+ s).*/\1/' <<<"$pull")"
done
