#!/usr/bin/env python3
"""Generate G.711 μ-law reference data with CPython's audioop (python <= 3.12).

Writes, next to this script:
  ulaw_decode_audioop.bin  256 codes -> i16 little-endian (512 bytes), audioop.ulaw2lin
  ulaw_encode_audioop.bin  every i16 from -32768 to 32767 -> one μ-law byte (65536 bytes),
                           audioop.lin2ulaw

audioop is an independent implementation (the Sun g711.c lineage) of the same standard,
so agreement with it is evidence that audio-codec-algorithms is correct, not a tautology.
Run: python3.11 tests/data/gen_g711_reference.py
"""
import os
import struct
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)
import audioop  # noqa: E402  (removed in Python 3.13)

here = os.path.dirname(os.path.abspath(__file__))

decoded = audioop.ulaw2lin(bytes(range(256)), 2)
assert len(decoded) == 512
# audioop works in native byte order; normalise to little-endian for the file.
samples = struct.unpack("=256h", decoded)
with open(os.path.join(here, "ulaw_decode_audioop.bin"), "wb") as f:
    f.write(struct.pack("<256h", *samples))

pcm = struct.pack("=65536h", *range(-32768, 32768))
encoded = audioop.lin2ulaw(pcm, 2)
assert len(encoded) == 65536
with open(os.path.join(here, "ulaw_encode_audioop.bin"), "wb") as f:
    f.write(encoded)
