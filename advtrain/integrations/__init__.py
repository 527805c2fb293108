"""advtrain's objectives inside other libraries' trainers. Each integration is its own module, imported by name, so
that ``import advtrain`` never imports the library it integrates with (an optional extra):

- `advtrain.integrations.trl`: TRL's `SFTTrainer` with PGD-AT, LDS, ALUM, FreeLB or R3F (``pip install 'advtrain[trl]'``).
"""
