#!/bin/sh
# The sample service: serves this directory on $PORT (weir sets it).
exec python3 -m http.server --bind 127.0.0.1 "$PORT"
