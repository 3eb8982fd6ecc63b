"""Identity from the unwrapped face texture: a small network on the map edge_runtime.unwrap reads
from each photo through a bundle's reconstruction. ``unwraps`` caches the maps of a dataset's
photos, ``model`` is the network, ``train`` its training run; export.texture_id adds it to a bundle.
"""
