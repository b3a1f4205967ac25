# E3D vs X3D at equal FLOPs on the hard motion benchmark (3 of 3):
# mmaction2's X3D backbone scaled to the FLOPs of the searched E3D-XS
# structure (17.07 M at 8x40x40), trained with the schedule of
# configs/e3d/e3d_xs_8x4x1_motion-hard.py and the same I3DHead (average over
# T, H, W, dropout 0.2, a linear layer): only the backbone differs.
# The gammas are the grid point whose FLOPs come closest to the searched
# structure's among gamma_w 0.25/0.5/0.75/1.0, gamma_b 1/1.25/1.5/1.75/2/2.25,
# gamma_d 0.5/1/1.2/1.5/2/2.2 (python bench/e3d_vs_x3d.py --gamma-grid):
# gamma_w 0.5 (base width 16), gamma_b 2.0, gamma_d 0.5 (stage depths
# 1, 1, 3, 2): 17,013,760 conv multiply-adds per clip (FlopAnalyzer, -0.3 %),
# 255,376 params, output 256 channels (the E3D configs' head width).
# X3D's other arguments keep their defaults (spatial strides 2, SE 1/16 in
# every other block, swish). mmaction2's X3D has no channels_last option,
# unlike the E3D configs (channels_last_3d), so clips/s compare the two as
# shipped.
#   python tools/train.py configs/compare/x3d_8x4x1_motion-hard.py
_base_ = ['../e3d/e3d_xs_8x4x1_motion-hard.py']

model = dict(
    backbone=dict(
        _delete_=True, type='X3D', gamma_w=0.5, gamma_b=2.0, gamma_d=0.5),
    cls_head=dict(in_channels=256))
