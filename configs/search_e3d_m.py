# E3D-M search: the X3D-M budget (16x224x224 clips, 5.0e9 FLOPs, 83 layers).
#   python tools/search.py configs/search_e3d_m.py [--cfg-options search.num_candidates=N]
image_size = 224
frames = 16

# Where the search starts (TinyNAS's E3D starting point); a preset name or a
# structure file works too.
init_structure = [
    dict(kind='conv', **{'in': 3, 'out': 24}, k=3, kt=1, s=2),
    dict(kind='dwbtn', **{'in': 24, 'out': 24}, k=5, kt=1, s=2, L=1, btn=48),
    dict(kind='dwbtn', **{'in': 24, 'out': 48}, k=3, kt=3, s=2, L=1, btn=96),
    dict(kind='dwbtn', **{'in': 48, 'out': 96}, k=3, kt=3, s=2, L=1, btn=192),
    dict(kind='dwbtn', **{'in': 96, 'out': 96}, k=3, kt=3, s=1, L=1, btn=192),
    dict(kind='dwbtn', **{'in': 96, 'out': 192}, k=3, kt=3, s=2, L=1,
         btn=384),
    dict(kind='conv', **{'in': 192, 'out': 512}, k=1, kt=1, s=1),
]

score = dict(
    type='STEntrScore',
    image_size=image_size,
    frames=frames,
    stage_weights=(0, 0, 0, 0, 1))
space = dict(
    type='E3DSearchSpace',
    image_size=image_size,
    frames=frames,
    kernels=((1, 3), (1, 5), (3, 3)),
    max_width=640,
    max_first_depth=3,
    # the published E3D-S / M stack at most 6 units a block
    max_depth=6)
search = dict(
    type='EntropyEvolution',
    population_size=256,
    num_candidates=100000,
    budgets=dict(flops=5.0e9, layers=83),
    crossover_prob=0.2,
    seed=0,
    top_k=5,
    checkpoint_interval=10000)
# The mmaction2 recipe the generated training config inherits (relative to
# this file).
train_base = 'e3d/e3d_m_16x5x1_kinetics400-rgb.py'
work_dir = './work_dirs/search_e3d_m'
