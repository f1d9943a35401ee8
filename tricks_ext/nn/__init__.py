"""Modules built on tricks_ext.functional (WSConv2d, EvoNormS0, Dropout, DropPath, ...)."""
