"""Deep-learning real/bogus reliability scores for difference-image sources."""
