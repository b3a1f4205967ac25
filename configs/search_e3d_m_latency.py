# E3D-M search with a latency budget on top of the X3D-M one: one 16x224x224
# clip (batch 1) in at most 80 ms on the CPU with 2 threads, predicted from a
# per-unit lookup table timed on this machine (E3D-M measured 78 to 97 ms on
# the 2-core CPU this project is developed on, with the allocator settings
# below). Latency belongs to a device: run this where the network will run,
# on an otherwise idle machine, and set the budget for it. On the CPU, time
# under the allocator the network will run with, e.g.
#   MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \
#       python tools/search.py configs/search_e3d_m_latency.py
# (the table records the allocator settings; see e3d_plugin/nas/latency.py).
_base_ = ['./search_e3d_m.py']

search = dict(
    budgets=dict(flops=5.0e9, layers=83, latency=80.0),
    latency=dict(
        type='LatencyTable',
        device='cpu',  # 'cuda' to time on the GPU
        batch_size=1,
        num_threads=2,
        # None: ~/.cache/e3d_plugin/latency/<device>-<settings hash>.json
        table_file=None))
work_dir = './work_dirs/search_e3d_m_latency'
