import time, torch, sys
from rlsmooth.agents import AGENTS
from rlsmooth.agents.dqn import start_value_run
from rlsmooth.population.members import stack
from rlsmooth.agents.preflight import load_train_config
from rlsmooth.config.yaml_files import CONFIGS, load_yaml, apply_overrides
torch.set_num_threads(1)
extra = sys.argv[1:]
def cfg_for(seed):
    return load_train_config(apply_overrides(load_yaml(CONFIGS / "ablations/minatar_dqn_net_c32_h256.yaml"), [f"seed={seed}",
        "loop.total_steps=10000000", "loop.progress=false", "algo.replay_capacity=1000", "algo.learning_starts=100",
        "device=cpu", "threads=1", "env.game=asterix", *extra]))
k = 9
cfgs = [cfg_for(i) for i in range(k)]
head = AGENTS[cfgs[0].agent].value_head(cfgs[0])
runs = [start_value_run(c, None, head) for c in cfgs]
net, target, adam = stack(runs, cfgs, torch.device("cpu"))
obs = torch.randint(0, 2, (k, 1, 4, 10, 10), dtype=torch.uint8)
def act():
    net.record = torch.ones(k, dtype=torch.bool)
    with torch.no_grad():
        return head.q_values(net, obs).argmax(dim=-1).cpu().numpy()
for _ in range(50): act()
for rep in range(4):
    t = time.perf_counter()
    for _ in range(100): act()
    print(f"act {(time.perf_counter()-t)/100*1e3:.3f} ms")
t = time.perf_counter()
for _ in range(500): act()
print(f"act wall {(time.perf_counter()-t)/500*1e3:.3f} ms")
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    for _ in range(200): act()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
