# E3D vs X3D at equal FLOPs on the hard motion benchmark (2 of 3): a random
# structure of the searched space at the same budget, trained with the
# schedule of configs/e3d/e3d_xs_8x4x1_motion-hard.py.
# How it was drawn (python bench/e3d_vs_x3d.py --draw-random repeats it, a
# test checks it): the space, budgets and clip of
# configs/search_e3d_xs_motion-hard.py; one random.Random(0); draw
# E3DSearchSpace.sample(E3D-XS, rng) again and again and take the first draw
# within every budget (1.72e7 FLOPs, 20 layers) and within 10 % of the
# searched structure's FLOPs (17,070,720 at 8x40x40); no draw was skipped
# for any other reason. The 17th draw: 16,943,616 FLOPs (-0.7 %), 44,296
# params, 17 layers, STEntr-Score 36.31 (searched: 48.09); stem 8, then dwbtn
# blocks 32/1x3x3 x2, 32/1x3x3 x2, 32/1x3x3 x1, head conv 256.
# It has no temporal kernel (kt = 1 everywhere), as 19 of the 107 draws
# that meet the same conditions among the first 3,000 of this sequence: it
# computes per-frame features, which the head averages over time, and the
# hard benchmark's single frames carry no class information, so it is
# expected at chance whatever the training.
#   python tools/train.py configs/compare/e3d_xs-random_8x4x1_motion-hard.py
_base_ = ['../e3d/e3d_xs_8x4x1_motion-hard.py']

model = dict(
    backbone=dict(
        arch=None,
        structure_file='configs/compare/structures/'
        'e3d_xs-random_motion-hard.json'),
    cls_head=dict(in_channels=256))
