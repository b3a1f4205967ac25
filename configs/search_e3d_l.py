# E3D-L search: the X3D-L budget (16x312x312 clips, 18.5e9 FLOPs, 167
# layers).
_base_ = ['./search_e3d_m.py']

image_size = 312
frames = 16
score = dict(image_size=image_size, frames=frames)
# the published E3D-L stacks 13 units a block
space = dict(image_size=image_size, frames=frames, max_depth=13)
search = dict(budgets=dict(flops=18.5e9, layers=167))
train_base = 'e3d/e3d_l_16x5x1_kinetics400-rgb.py'
work_dir = './work_dirs/search_e3d_l'
