# A small search for the built-in synthetic dataset (8x64x64 clips): start
# from E3D-XS and keep it within its cost; the generated config trains on
# the synthetic motion videos.
_base_ = ['./search_e3d_m.py']

image_size = 64
frames = 8
init_structure = 'E3D-XS'
score = dict(image_size=image_size, frames=frames, stage_weights=(0, 0, 0, 1))
space = dict(image_size=image_size, frames=frames, max_width=256,
             max_stem_width=16, max_depth=4)
search = dict(budgets=dict(flops=4.0e7, layers=20), num_candidates=20000)
train_base = 'e3d/e3d_xs_8x4x1_synthetic-motion.py'
work_dir = './work_dirs/search_e3d_xs'
