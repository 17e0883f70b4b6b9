#!/usr/bin/env bash
# Throughput over SASL_SSL against PLAINTEXT on the same broker in the same
# run, and TLS handshakes per second. Not part of CI; the figures go to
# docs/benchmarks.md.
#
#   scripts/bench_security.sh [RECORDS]     # default 2,000,000 records of 100 B
#
# Needs: target/release/rivulet (cargo build --release), kcat, openssl, and
# the venv's confluent-kafka (for SCRAM logins per second).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${1:-2000000}"
BIN=target/release/rivulet
PY=.venv/bin/python
WORK="$(mktemp -d)"
trap 'kill "$BROKER" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# A CA and a broker certificate.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$WORK/broker.key" -out "$WORK/broker.csr" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > "$WORK/ext"
openssl x509 -req -in "$WORK/broker.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/ext" -out "$WORK/broker.crt" 2>/dev/null
cat "$WORK/broker.key" "$WORK/broker.crt" > "$WORK/broker.pem"

"$BIN" broker --data-dir "$WORK/data" --metrics-addr none \
    --listeners PLAINTEXT://127.0.0.1:39092,SASL_SSL://127.0.0.1:39093 \
    --config listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL \
    --config ssl.keystore.location="$WORK/broker.pem" \
    --config sasl.enabled.mechanisms=SCRAM-SHA-512 \
    --add-scram 'SCRAM-SHA-512=[name=bench,password=bench-secret]' \
    2> "$WORK/broker.log" &
BROKER=$!
for _ in $(seq 1 100); do
    kcat -b 127.0.0.1:39092 -L -m 2 >/dev/null 2>&1 && break
    sleep 0.2
done
sleep 2

SASL_SSL=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/ca.pem"
    -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password=bench-secret)
python3 -c "import sys; sys.stdout.buffer.write((b'x'*100+b'\n')*$RECORDS)" > "$WORK/lines"

rate() { # seconds -> records/s
    python3 -c "print(f'{$RECORDS / $1:,.0f}')"
}
timed() { # command... -> seconds
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    end=$(date +%s.%N)
    python3 -c "print(round($end - $start, 2))"
}

for round in 1 2; do
    for proto in PLAINTEXT SASL_SSL; do
        if [ "$proto" = PLAINTEXT ]; then port=39092; extra=(); else port=39093; extra=("${SASL_SSL[@]}"); fi
        topic="bench-$proto-$round"
        kcat -b 127.0.0.1:39092 -L -t "$topic" -m 5 >/dev/null 2>&1 || true
        p=$(timed kcat -P -b 127.0.0.1:$port "${extra[@]}" -t "$topic" -X acks=all -X linger.ms=5 \
            -X batch.size=1000000 -X queue.buffering.max.messages=1000000 -l "$WORK/lines")
        c=$(timed kcat -C -b 127.0.0.1:$port "${extra[@]}" -t "$topic" -o beginning -e -q -f '')
        stored=$(kcat -C -b 127.0.0.1:39092 -t "$topic" -o beginning -e -q -f 'x\n' | wc -l)
        if [ "$stored" -ne "$RECORDS" ]; then
            echo "error: $topic holds $stored records, not $RECORDS" >&2
            exit 1
        fi
        printf '%-10s round %d: produce %6ss (%s rec/s), consume %6ss (%s rec/s)\n' \
            "$proto" "$round" "$p" "$(rate "$p")" "$c" "$(rate "$c")"
    done
done

echo "TLS handshakes (openssl s_time, new sessions, 10 s):"
openssl s_time -connect 127.0.0.1:39093 -new -time 10 2>/dev/null | grep -E "connections in|connections/user" | head -2

"$PY" - "$WORK/ca.pem" <<'EOF'
import sys, time
from confluent_kafka.admin import AdminClient
conf = {"bootstrap.servers": "127.0.0.1:39093", "security.protocol": "SASL_SSL",
        "ssl.ca.location": sys.argv[1], "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "bench", "sasl.password": "bench-secret"}
n, start = 0, time.perf_counter()
while time.perf_counter() - start < 10:
    AdminClient(conf).list_topics(timeout=10)
    n += 1
elapsed = time.perf_counter() - start
print(f"SASL_SSL SCRAM-SHA-512 logins (new client, TLS handshake, SCRAM, Metadata): {n / elapsed:.1f}/s ({n} in {elapsed:.1f} s)")
EOF
