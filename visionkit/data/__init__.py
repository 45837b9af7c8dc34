"""Data: the image decoder, dataset readers, converters, pipelines, the sample contract and
collate, data checks and the shapes generator."""
