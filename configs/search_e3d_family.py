# S, M and L searched in one run (one process, one start-up), each with its
# own clip size and budgets, into work_dir/S, work_dir/M, work_dir/L;
# work_dir/family_summary.json collects the three summaries.
#   python tools/search.py configs/search_e3d_family.py [--seed N]
#       [--cfg-options search.num_candidates=N]
family = dict(S='search_e3d_s.py', M='search_e3d_m.py', L='search_e3d_l.py')
work_dir = './work_dirs/search_e3d_family'
