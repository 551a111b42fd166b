"""Class-name embeddings: the semantic space a_c of every class."""
