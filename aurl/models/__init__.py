"""Model families: the decoder-only Transformer and the VAE built around it (chosen in aurl.modes)."""
