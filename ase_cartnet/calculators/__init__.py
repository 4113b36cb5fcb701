"""ASE adapters: validate the input, build the graph, run the model, convert units."""
