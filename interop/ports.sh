# Loopback ports for the tunnel benchmarks (sourced, not run).
# shellcheck shell=bash

# free_pair: prints P where P and P+1 are free on 127.0.0.1 for TCP and UDP, chosen below the
# kernel's ephemeral range (a port inside it may belong to a recent connection, and a run's
# own connections take ports there).
free_pair() {
    python3 - "$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range)" <<'EOF'
import random, socket, sys
hi = int(sys.argv[1]) - 2
for _ in range(1000):
    p = random.randint(10000, hi)
    try:
        for port in (p, p + 1):
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                s.bind(("127.0.0.1", port))
                s.close()
    except OSError:
        continue
    print(p)
    break
else:
    sys.exit("no free port pair")
EOF
}
