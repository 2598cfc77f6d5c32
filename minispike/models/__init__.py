"""The models: the BERT teacher (``bert``) and the spiking student (``spikebert``)."""
