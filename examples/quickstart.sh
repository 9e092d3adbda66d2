#!/usr/bin/env bash
# Simulate one DSC phantom with ground truth, compute its maps with oSVD and
# Tikhonov, and print the tumour-to-white-matter ratios next to the truth.
#
# Usage: examples/quickstart.sh [WORK_DIR]   (default: ${TMPDIR:-/tmp}/perfmap-demo)
# Running it again replaces the files of the previous run (--overwrite).
set -euo pipefail
work=${1:-${TMPDIR:-/tmp}/perfmap-demo}
perfmap simulate "$work" --subjects 1 --snr 50 --seed 7 --overwrite -q
for method in osvd tikhonov; do
  perfmap compute "$work/sub-01.nii.gz" --aif "$work/sub-01_aifmask.nii.gz" \
    --mask "$work/sub-01_brainmask.nii.gz" --method "$method" \
    --roi tumour="$work/sub-01_tumour.nii.gz" --ref "$work/sub-01_ref.nii.gz" \
    --out-dir "$work/maps_$method" --overwrite
done
python - "$work/sub-01.json" <<'PY'
import json, sys
truth = json.load(open(sys.argv[1]))["perfmapPhantom"]
print("truth: " + ", ".join(f"{k}={truth[k]:.3f}" for k in ("cbf_ratio", "cbv_ratio", "mtt_ratio")))
PY
echo "maps written under $work/maps_osvd and $work/maps_tikhonov"
