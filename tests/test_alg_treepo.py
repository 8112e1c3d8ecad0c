"""TreePO (polrl.algorithms.treepo): the sub-group advantage by hand and against a transcription of
the paper's definition on string paths, the noun's prepare by hand, and a training step."""
import collections

import jax.numpy as jnp
import numpy as np
import pytest

from polrl import algorithms
from polrl.core import EXPERT
from polrl.algorithms.treepo import subgroup_advantages, tree_advantage
from alg_testing import apply, assert_trained, check_algorithm_transforms, check_transform_contract, hand_batch, rollout_batch

# Group 0 (rows 0–3): root → a (decoded by leaf 0) → {leaf 0, leaf 1}; root → b (leaf 2) → {leaf 2,
# leaf 3}. Group 1 (rows 4–7): root → c (leaf 0) → {leaf 0, leaf 1 → {…}}; leaf 2 ends at depth 1;
# leaf 3 restarts from the root. Entries: the leaf whose slot decoded the node at depth d + 1.
NODE = np.array([[0, 0, -1], [0, 1, -1], [2, 2, -1], [2, 3, -1],
                 [0, 0, 0], [0, 0, 1], [2, -1, -1], [3, 3, -1]], np.int32)
REWARD = np.array([1, 0, 0, 0, 1, 0, 1, 1], np.float32)
GROUP = np.arange(8, dtype=np.int32) // 4


def test_subgroup_advantage_by_hand():
    # Group 0: root mean 1/4; a: rows {0, 1} mean 1/2; b: rows {2, 3} mean 0; depth 2 all singletons.
    #   average: A0 = ((1 − 1/4) + (1 − 1/2)) / 2 = 5/8,  A1 = (−1/4 − 1/2)/2 = −3/8,  A2 = A3 = (−1/4 + 0)/2
    #   size:    A0 = (4·3/4 + 2·1/2) / 6 = 2/3,  A1 = (4·(−1/4) + 2·(−1/2)) / 6 = −1/3,  A2 = A3 = −1/6
    # Group 1: root mean 3/4; c = rows {4, 5} mean 1/2 at depth 1 and depth 2 (node 0 shared again);
    #   depth 3 singletons; rows 6, 7 share nothing below the root.
    #   average: A4 = (1/4 + 1/2 + 1/2) / 3 = 5/12,  A5 = (−3/4 − 1/2 − 1/2) / 3 = −7/12,  A6 = A7 = 1/4
    #   size:    A4 = (4·1/4 + 2·1/2 + 2·1/2) / 8 = 3/8,  A5 = (4·(−3/4) − 1 − 1) / 8 = −5/8,  A6 = A7 = 1/4
    average = subgroup_advantages(REWARD, GROUP, NODE, 4, "average")
    np.testing.assert_allclose(average, [5 / 8, -3 / 8, -1 / 8, -1 / 8, 5 / 12, -7 / 12, 1 / 4, 1 / 4], rtol=1e-6)
    size = subgroup_advantages(REWARD, GROUP, NODE, 4, "size")
    np.testing.assert_allclose(size, [2 / 3, -1 / 3, -1 / 6, -1 / 6, 3 / 8, -5 / 8, 1 / 4, 1 / 4], rtol=1e-6)
    with pytest.raises(ValueError, match="weighting='mean'"):
        subgroup_advantages(REWARD, GROUP, NODE, 4, "mean")


def paths_reference(reward, node, group_size, weighting):
    """The paper's definition on string paths "k#n1#n2…" (one entry per depth, its leaf's uid):
    sub-groups are the leaves sharing a path prefix; a prefix shared by one leaf only is left out
    below the root; the advantages of the kept sub-groups are averaged or size-weighted."""
    uids = [[f"q{i // group_size}"] + [f"{d}-{n}" for d, n in enumerate(row) if n >= 0] for i, row in enumerate(node)]
    depth = max(len(u) for u in uids)
    total, weight = np.zeros(len(uids)), np.zeros(len(uids))
    for d in range(depth):
        key = ["#".join(u[: d + 1]) if len(u) > d else None for u in uids]
        members = collections.defaultdict(list)
        for i, k in enumerate(key):
            if k is not None:
                members[k].append(i)
        for k, rows in members.items():
            if d > 0 and len(rows) < 2:
                continue
            mean = np.mean([reward[i] for i in rows])
            w = 1.0 if weighting == "average" else len(rows)
            for i in rows:
                total[i] += w * (reward[i] - mean)
                weight[i] += w
    return total / weight


@pytest.mark.parametrize("weighting", ["average", "size"])
def test_subgroup_advantage_equals_the_path_definition_on_random_trees(weighting):
    rng = np.random.default_rng(0)
    for _ in range(20):
        groups, leaves, depth = 3, 6, 4
        node = np.full((groups * leaves, depth), -1, np.int32)
        for k in range(groups):  # grow a random tree: each leaf forks a random earlier one
            rows = node[k * leaves:(k + 1) * leaves]
            for j in range(leaves):
                start = rng.integers(0, depth)
                if j and start:
                    src = rng.integers(0, j)
                    start = min(start, int((rows[src] >= 0).sum()) - 1)  # src goes on past the fork
                    rows[j, :start] = rows[src, :start]
                end = rng.integers(start + 1, depth + 1) if start < depth else depth
                rows[j, start:end] = j
        reward = rng.integers(0, 2, groups * leaves).astype(np.float32)
        got = subgroup_advantages(reward, np.arange(groups * leaves, dtype=np.int32) // leaves, node, leaves, weighting)
        np.testing.assert_allclose(got, paths_reference(reward, node, leaves, weighting), rtol=1e-5, atol=1e-6)


def test_prepare_whitens_over_the_kept_groups_by_hand():
    # Group 0 as above (average: 5/8, −3/8, −1/8, −1/8; one token each → mean 0, unbiased
    # variance (25 + 9 + 1 + 1)/64 / 3 = 3/16); group 1 all correct → masked out.
    node = np.concatenate([NODE[:4], NODE[:4]])
    batch = hand_batch(np.ones((8, 1)), reward_b=[1, 0, 0, 0, 1, 1, 1, 1], group_b=GROUP, aux={"tree_node_bd": node})
    batch = batch.replace(aux={"tree_node_bd": node}, group_size=4)
    out = apply(algorithms.treepo().prepare, batch)
    std = np.sqrt(3 / 16)
    np.testing.assert_allclose(out.adv_bt[:, 0], [5 / 8 / std, -3 / 8 / std, -1 / 8 / std, -1 / 8 / std, 0, 0, 0, 0],
                               rtol=1e-5)
    np.testing.assert_array_equal(out.mask_bt[:, 0], [1, 1, 1, 1, 0, 0, 0, 0])


def test_expert_rows_join_their_group_at_the_root_only():
    # Group 0 of the hand example with row 3 an expert row whose node entries are padding (0, the
    # id of a real node): it must count as a row that shares no node, the tree's node −1.
    node = np.asarray(NODE[:4]).copy()
    node[3] = 0
    batch = hand_batch(np.ones((4, 1)), reward_b=REWARD[:4], group_b=GROUP[:4], source_b=[0, 0, 0, EXPERT])
    expected = np.asarray(NODE[:4]).copy()
    expected[3] = -1
    batch = batch.replace(group_size=4)
    out = apply(tree_advantage(), batch.replace(aux={"tree_node_bd": jnp.asarray(node, jnp.int32)}))
    np.testing.assert_allclose(out.adv_bt[:, 0], subgroup_advantages(
        jnp.asarray(REWARD[:4], jnp.float32), jnp.asarray(GROUP[:4]), jnp.asarray(expected, jnp.int32), 4, "average"),
        rtol=1e-6)


def test_missing_tree_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tree_node_bd.*config.collector = \"tree\""):
        apply(tree_advantage(), hand_batch([[1]], reward_b=[1.0], group_b=[0]))
    with pytest.raises(TypeError, match=r"treepo\(\) got unexpected keyword argument\(s\) \['scale'\]"):
        algorithms.treepo(scale="std")


def tree_rollout_batch(seed):
    batch = rollout_batch(seed=seed)
    node = np.array([[0, 0], [0, 1], [2, 2], [3, -1]] * 2, np.int32)
    return batch.replace(aux={**batch.aux, "tree_node_bd": node})


def test_contract_and_train_step(monkeypatch):
    check_transform_contract(tree_advantage(), tree_rollout_batch(0), tree_rollout_batch(1))
    alg = algorithms.treepo(learning_rate=1e-2)
    assert alg.needs == frozenset() and alg.collector is None
    import alg_testing
    monkeypatch.setattr(alg_testing, "rollout_batch", lambda b=8, t=4, seed=0: tree_rollout_batch(seed))
    check_algorithm_transforms(alg)
    assert_trained(alg, ["pg", "zero_variance_frac"])


def test_trainer_rejects_treepo_on_a_flat_collector(tmp_path, monkeypatch):
    """The check before compiling names the phase, the missing tree and the collector to use."""
    import ml_collections

    from experiments import chain_treepo
    from polrl.train.build import build_spec
    from polrl.train.trainer import Trainer

    monkeypatch.setenv("POLRL_DATA_DIR", str(tmp_path / "data"))
    config = chain_treepo.get_config("smoke")
    config.collector, config.collector_kwargs = "group_samples", ml_collections.ConfigDict()
    spec = build_spec(config, progress=False)
    with pytest.raises(ValueError, match=r"phase 'rl': tree_advantage needs Batch.aux field\(s\) \['tree_node_bd'\].*"
                                         r"config.collector = \"tree\""):
        Trainer(spec, str(tmp_path / "run"))
