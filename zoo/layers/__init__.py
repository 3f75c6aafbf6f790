"""Building blocks shared by the models in ``zoo.models``; each module holds one kind of layer."""
