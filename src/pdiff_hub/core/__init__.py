"""The core: which parameters are generated (ParameterLayout) and the small networks generated whole."""
