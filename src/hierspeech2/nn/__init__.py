"""Building blocks shared by the hierspeech2 models (plain ``nn.Module``s taking ints, floats and tuples)."""
