"""Synthetic KuaiRand-format datasets with a known label model.

Why this exists: the real KuaiRand interaction logs are tens of megabytes (Pure) to tens of
gigabytes (27K), so demos and tests cannot ship them. This module writes logs in the *exact*
KuaiRand file layout (same file names, columns, value formats, quoting and NaN patterns), with
side features drawn from the real marginal statistics, and labels drawn from a documented
model whose true probabilities are saved next to the logs. A loader that reads these files
reads the real ones, and a model's AUC can be compared with the ceiling AUC.

Nothing is read from disk at run time: every statistic below is a module constant with its
source named. Sources:

* "Pure features": the original ``user_features_pure.csv`` (27,285 users) and
  ``video_features_basic_pure.csv`` (7,583 videos) of KuaiRand-Pure (Gao et al., CIKM 2022,
  CC BY-SA 4.0); counts, quantiles and value tables were measured on those files.
* "27K stats": third-party aggregates of the full KuaiRand-27K logs (limings02/kuairand,
  ``EDA/kuairand_report/tables``): per-tab exposures, click rates and active users, random-log
  tab shares and click rates.
* "official README": chongminggao/KuaiRand README (field list and order, ``hourmin`` format,
  ``long_view`` definition, author id range).

Label model (see ``docs/generator.md`` for the full text). For an exposure of video ``v``
(author ``a``) to user ``u`` in tab ``d`` at hour ``h``, every task ``t`` has a base logit::

    s_t = lamU[d] * BU[u,t] + lamI[d] * kU[u,t] * (BA[a,t] + BV[v,t])
          + lamA[d] * wA[t] * mU[u,t] * mA[a,t] * aff_d(u,v)
          + wDeg[t] * deg[u] + wF1[t] * F1[d, onehot_feat1[u]] + wTag[t] * TAG[d, tag1[v]]
          + dur[d,t] * zdur[v] + ad[t] * is_ad[v] + (user/hour terms)
    aff_d(u,v) = sum_k G[d,k] * P[u,k] * (Q[v,k] + R[a,k]) / norm_d

``BU/BA/BV`` are per-user, per-author and per-video task propensities. ``kU``, ``mU`` and
``mA`` are per-user (and per-author) per-task weights of the item side, of PPNet's gate form
``2 * sigmoid(g)`` with ``g`` tied to user_active_degree, is_video_author and the ids (PPNet's
target: a model without per-user per-task scaling cannot represent them). ``G[d]`` is a
per-tab gate on the latent dimensions and ``lamU/lamI/lamA`` weigh the user side, item side
and affinity differently per tab (EPNet's target); ``F1`` and ``TAG`` are per-tab effect
tables, so the same feature matters differently in each domain. There is no row-level noise:
``s`` is a function of what a model sees (ids, side features, tab, hour), so the truth is an
attainable ceiling. Labels are drawn in a chain::

    click ~ B(sig(a_click[d] + s_click))
    long_view ~ B(sig(a_lv + s_lv + 2.5 click))
    like/follow/comment/forward ~ B(sig(a_t + s_t + kc_t click + kl_t long_view))
    hate ~ B(sig(a_hate + s_hate - 1.5 click - 1.0 long_view))

The truth file holds each task's probability given the row's features, marginalised over the
chain (the Bayes-optimal score for a model that sees the features but not the other labels);
``truth/latent/*.npy`` holds the tables it is computed from. The intercepts ``a`` are found by
bisection so that the mean probability equals the target rate: per-tab click rates are the
real ones (27K stats); the other rates are assumptions, since no per-tab rates of the other
labels are public.

The package, one module a step of the simulation (the data flows down the list):

* ``stats``: the real datasets' statistics and the label model's constants;
* ``side``: the user and video feature tables;
* ``world``: the latent per-user / per-video / per-author tables;
* ``exposures``: which user sees which video, in which tab, when;
* ``labels``: the label chain and its calibrated intercepts;
* ``truth``: each row's true probabilities (the ceiling);
* ``writer``: the CSV bytes;
* ``generator``: ``generate`` and the command line (``python -m pepnet_jax.synth``).
"""

from __future__ import annotations

from pepnet_jax.synth.stats import (  # noqa: F401
    LOG_COLUMNS, USER_COLUMNS, VIDEO_COLUMNS, TASKS, TRUTH_COLUMNS, LABELS, PERIODS,
    BEIJING_UTC_OFFSET_MS, N_REAL_USERS, N_REAL_VIDEOS, ACTIVE_DEGREE_COUNTS, DEGREES,
    LIVE_STREAMER_RATE, VIDEO_AUTHOR_RATE, COUNT_PERCENTILES, COUNT_QUANTILES, COUNT_CORR,
    BUCKETS, ONEHOT_COUNTS, ONEHOT7_SORTED_COUNTS, ONEHOT_RANK_PROFILE, ONEHOT4_NAN_RATE,
    ONEHOT12_17_NAN_RATE, ONEHOT12_17_RATE, DURATION_PERCENTILES, UPLOAD_TYPES,
    AD_RATE_GIVEN_UNKNOWN_UPLOAD, UNKNOWN_VIDEO_TYPE_RATE, UPLOAD_DT_COUNTS, SERVER_DIMS_COUNTS,
    SERVER_DIMS_OTHER, MUSIC_TYPE_COUNTS, TAG_COMBO_COUNTS, TAG_NAN_COUNT, AUTHOR_ID_MAX,
    TAB_STATS, RANDOM_TAB_STATS, MIN_RATE, TARGET_RATES, HOUR_WEIGHTS, TAB_LAMBDA, DUR_CLICK,
    DEFAULT_DUR_CLICK, DEGREE_ACTIVITY, DEGREE_EFFECT, LATENT_DIM, N_POLICY_CANDIDATES,
    SIG_USER, SIG_AUTHOR, SIG_VIDEO, RHO_SHARED, W_AFF, W_DEG, W_F1, W_TAG, W_AD, W_DUR,
    W_FOLLOWS, W_AUTHOR_USER, W_HOUR, P_FEAT, P_OWN, Q_FEAT, Q_OWN, R_OWN, DEGREE_SCALE,
    SCALE_DEG, SCALE_AUTHOR, SIG_SCALE, STYLE_ANGLE, SIG_SCALE_OWN, K_FROM_M, SIG_K_OWN, RHO_K,
    SIG_SCALE_AUTHOR_ID, RHO_SCALE_AUTHOR, GENERATOR_VERSION, DEFAULT_TABS, CHAIN, LONG_VIEW_MS,
    VALID_PLAY_MS)
from pepnet_jax.synth.side import (  # noqa: F401
    make_users, ALL_TAGS, make_videos)
from pepnet_jax.synth.truth import (  # noqa: F401
    load_latent, truth_from_latent)
from pepnet_jax.synth.generator import (  # noqa: F401
    log_file_name, generator_args, generate, main)
