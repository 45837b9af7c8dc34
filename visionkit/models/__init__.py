"""Models: backbones, necks and heads, the :class:`VisionModel` that joins them, the loss
balancing between heads, the factory that builds a model from a config and the transfer of
weights between models."""
