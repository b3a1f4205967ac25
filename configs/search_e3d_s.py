# E3D-S search: the X3D-S budget (13x160x160 clips, 2.0e9 FLOPs, 83 layers).
_base_ = ['./search_e3d_m.py']

image_size = 160
frames = 13
score = dict(image_size=image_size, frames=frames)
space = dict(image_size=image_size, frames=frames, max_depth=6)
search = dict(budgets=dict(flops=2.0e9, layers=83))
train_base = 'e3d/e3d_s_13x6x1_kinetics400-rgb.py'
work_dir = './work_dirs/search_e3d_s'
