"""Op definitions, one module per op family; importing a module registers its ops."""
