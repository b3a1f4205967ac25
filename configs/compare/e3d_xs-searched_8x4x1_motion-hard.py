# E3D vs X3D at equal FLOPs on the hard motion benchmark (1 of 3): the XS
# structure the STEntr-Score search finds at the benchmark's clip, trained
# with the schedule of configs/e3d/e3d_xs_8x4x1_motion-hard.py (only the
# backbone differs between the three configs of this folder).
# The structure is the best of
#   python tools/search.py configs/search_e3d_xs_motion-hard.py
# (seed 0, 20,000 candidates, 8x40x40 clip, budgets: 1.72e7 FLOPs, 20
# layers): STEntr-Score 48.093, 17,070,720 FLOPs (cost model and
# FlopAnalyzer agree), 147,616 params, 20 layers; stem 16, then dwbtn
# blocks 16/3x3x3 x1, 32/3x3x3 x1, 80/3x3x3 x4, head conv 256.
#   python tools/data/synthetic_motion.py --preset hard --out data/motion_hard
#   python tools/train.py configs/compare/e3d_xs-searched_8x4x1_motion-hard.py
#   python bench/e3d_vs_x3d.py   # all three, 3 seeds each
_base_ = ['../e3d/e3d_xs_8x4x1_motion-hard.py']

model = dict(
    backbone=dict(
        arch=None,
        structure_file='configs/compare/structures/'
        'e3d_xs-searched_motion-hard.json'),
    cls_head=dict(in_channels=256))
