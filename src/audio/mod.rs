//! Audio between the two protocols: G.711 μ-law, 8 kHz ⇄ 24 kHz resampling, 20 ms framing.
