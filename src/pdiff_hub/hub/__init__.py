"""The Hub: a folder as one commit, parameter datasets and pipelines published, timm export, cards."""
