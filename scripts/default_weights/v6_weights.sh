#!/bin/bash
# v6's weights and card (CHGNet labels, commit dab3a00): the starting point of the v7 recipe,
# which fine-tunes them on SevenNet-0 labels. Writes DIR/v6_weights.pt and DIR/v6_card.json
# (the card is export.py's --pretrained-card) unless they are there already.
#   bash scripts/default_weights/v6_weights.sh runs/v10
set -e
DIR=${1:?usage: v6_weights.sh DIR}
mkdir -p "$DIR"
v6=dab3a00:ase_cartnet/weights/cartnet_adp_default
[ -f "$DIR/v6_weights.pt" ] || git show "$v6.pt" > "$DIR/v6_weights.pt"
[ -f "$DIR/v6_card.json" ] || git show "$v6.json" > "$DIR/v6_card.json"
