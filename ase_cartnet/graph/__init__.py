"""Graphs of crystals: neighbour lists, crystal, line and k-NN graphs, and their featurisation.

The layer between the ADP mathematics and the models: every model reads graphs built here.
"""
