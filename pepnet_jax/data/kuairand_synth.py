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
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from pepnet_jax import metrics
from pepnet_jax.files import atomic_write

# --------------------------------------------------------------------------------------------
# Layout (official README; header lines checked against the real Pure feature files)
# --------------------------------------------------------------------------------------------

LOG_COLUMNS = (
    "user_id", "video_id", "date", "hourmin", "time_ms", "is_click", "is_like", "is_follow",
    "is_comment", "is_forward", "is_hate", "long_view", "play_time_ms", "duration_ms",
    "profile_stay_time", "comment_stay_time", "is_profile_enter", "is_rand", "tab",
)
USER_COLUMNS = (
    "user_id", "user_active_degree", "is_lowactive_period", "is_live_streamer",
    "is_video_author", "follow_user_num", "follow_user_num_range", "fans_user_num",
    "fans_user_num_range", "friend_user_num", "friend_user_num_range", "register_days",
    "register_days_range", *(f"onehot_feat{i}" for i in range(18)),
)
VIDEO_COLUMNS = (
    "video_id", "author_id", "video_type", "upload_dt", "upload_type", "visible_status",
    "video_duration", "server_width", "server_height", "music_id", "music_type", "tag",
)
#: Truth columns: one probability per binary task, in this order.
TASKS = ("is_click", "is_like", "is_follow", "is_comment", "is_forward", "is_hate", "long_view")
TRUTH_COLUMNS = tuple(f"p_{t}" for t in TASKS)
#: Labels reported in the realized-rate summary (the 7 tasks plus is_profile_enter).
LABELS = TASKS + ("is_profile_enter",)

#: The two standard-log periods (official file names) and the random-log period.
PERIODS = {
    "4_08_to_4_21": (_dt.date(2022, 4, 8), 14),
    "4_22_to_5_08": (_dt.date(2022, 4, 22), 17),
}
BEIJING_UTC_OFFSET_MS = 8 * 3600 * 1000

# --------------------------------------------------------------------------------------------
# User features (Pure features: user_features_pure.csv, 27,285 rows)
# --------------------------------------------------------------------------------------------

N_REAL_USERS = 27285
N_REAL_VIDEOS = 7583

#: user_active_degree value counts.
ACTIVE_DEGREE_COUNTS = {
    "full_active": 17959, "high_active": 6158, "middle_active": 2133, "2_14_day_new": 635,
    "low_active": 300, "single_low_active": 68, "30day_retention": 15, "day_new": 11,
    "UNKNOWN": 6,
}
DEGREES = tuple(ACTIVE_DEGREE_COUNTS)
#: P(is_live_streamer == 1 | degree) (else -124, the dataset's unknown code) and
#: P(is_video_author == 1 | degree), from the degree cross-tabs.
LIVE_STREAMER_RATE = {
    "full_active": 4886 / 17959, "high_active": 863 / 6158, "middle_active": 202 / 2133,
    "2_14_day_new": 168 / 635, "low_active": 26 / 300, "single_low_active": 8 / 68,
    "30day_retention": 1 / 15, "day_new": 2 / 11, "UNKNOWN": 2 / 6,
}
VIDEO_AUTHOR_RATE = {
    "full_active": 15116 / 17959, "high_active": 4644 / 6158, "middle_active": 1678 / 2133,
    "2_14_day_new": 539 / 635, "low_active": 217 / 300, "single_low_active": 55 / 68,
    "30day_retention": 12 / 15, "day_new": 9 / 11, "UNKNOWN": 6 / 6,
}

#: Percentile levels and values of the four count columns (joint law: Gaussian copula with
#: the normal-score correlation below, marginals interpolated in log1p space).
COUNT_PERCENTILES = (0, 0.5, 1, 2.5, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70,
                     75, 80, 85, 90, 95, 97.5, 99, 99.5, 99.9, 100)
COUNT_QUANTILES = {
    "follow_user_num": (0, 0, 1, 3, 7, 16, 26, 38, 50, 66, 83, 102, 125, 155, 189, 230, 280,
                        345, 430, 549, 722, 1021, 1743, 2605, 4128, 4989, 5000, 5003),
    "fans_user_num": (0, 0, 0, 0, 1, 2, 5, 7, 10, 14, 19, 26, 35, 48, 64, 87, 117, 160, 221,
                      306, 443, 660, 1159, 2018, 4374, 7037, 55086, 1986249),
    "friend_user_num": (0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 6, 8, 11, 16, 22, 30, 42, 60, 83, 119,
                        181, 295, 550, 881, 1626, 2542, 4497, 4995),
    "register_days": (14, 30, 42, 73, 124, 265, 406, 541, 683, 794, 870, 980, 1080, 1188,
                      1295, 1414, 1534, 1611, 1701, 1800, 1929, 2108, 2381, 2574, 2700, 2759,
                      2875, 3624),
}
COUNT_CORR = np.array([  # follow, fans, friend, register_days (normal scores)
    [1.00, 0.52, 0.65, 0.22],
    [0.52, 1.00, 0.87, 0.31],
    [0.65, 0.87, 1.00, 0.21],
    [0.22, 0.31, 0.21, 1.00],
])
#: Bucket strings: (lower bounds, labels); a count gets the label of the last bound <= it.
BUCKETS = {
    "follow_user_num": ((0, 1, 11, 51, 101, 151, 251, 501),
                        ("0", "(0,10]", "(10,50]", "(50,100]", "(100,150]", "(150,250]",
                         "(250,500]", "500+")),
    "fans_user_num": ((0, 1, 10, 100, 1000, 5000, 10000, 100000, 1000000),
                      ("0", "[1,10)", "[10,100)", "[100,1k)", "[1k,5k)", "[5k,1w)", "[1w,10w)",
                       "[10w,100w)", "[100w,1000w)")),
    "friend_user_num": ((0, 1, 5, 30, 60, 120, 250),
                        ("0", "[1,5)", "[5,30)", "[30,60)", "[60,120)", "[120,250)", "250+")),
    # "8-14" is not in the official README but occurs once in the real file (register_days 14).
    "register_days": ((0, 15, 31, 61, 91, 181, 366, 731),
                      ("8-14", "15-30", "31-60", "61-90", "91-180", "181-365", "366-730",
                       "730+")),
}

#: Full value counts of the low/medium-cardinality one-hot features (key = category index).
ONEHOT_COUNTS = {
    0: {0: 11921, 1: 15364},
    1: {0: 848, 1: 6006, 2: 5096, 3: 3432, 4: 7221, 5: 2759, 6: 1923},
    2: {0: 8, 1: 1, 2: 6877, 3: 18, 4: 2, 5: 4, 6: 3, 7: 8, 8: 9, 9: 762, 10: 5097, 11: 86,
        12: 5, 13: 11, 14: 11, 15: 35, 16: 21, 17: 3, 18: 22, 19: 5525, 20: 57, 21: 15,
        22: 79, 23: 1, 24: 100, 25: 6, 26: 3, 27: 12, 28: 816, 29: 5410, 30: 42, 31: 1632,
        32: 4, 33: 143, 34: 64, 35: 1, 36: 16, 37: 1, 38: 17, 39: 1, 40: 12, 41: 1, 42: 8,
        43: 1, 44: 1, 45: 3, 46: 2, 47: 1, 48: 309, 49: 19},
    4: {0: 3039, 1: 10083, 2: 5061, 3: 3184, 4: 2021, 5: 1062, 6: 862, 7: 379, 8: 401,
        9: 270, 10: 9, 11: 16, 12: 14, 13: 8, 14: 2},
    5: {0: 27126, 1: 1, 2: 25, 3: 10, 4: 4, 5: 23, 6: 1, 7: 8, 8: 12, 9: 1, 10: 1, 11: 2,
        12: 1, 13: 3, 14: 1, 15: 1, 16: 1, 17: 1, 18: 3, 19: 1, 20: 2, 21: 1, 22: 1, 23: 1,
        24: 5, 25: 4, 26: 1, 27: 35, 28: 1, 29: 1, 30: 3, 31: 1, 32: 2, 33: 1},
    6: {0: 14731, 1: 12395, 2: 159},
    9: {0: 260, 1: 6082, 2: 1427, 3: 6233, 4: 3177, 5: 4019, 6: 6087},
    10: {0: 4308, 1: 36, 2: 7973, 3: 10904, 4: 4064},
    11: {0: 20333, 1: 264, 2: 6685, 3: 2, 4: 1},
}
#: onehot_feat7 (118 categories): all category counts, sorted descending.
ONEHOT7_SORTED_COUNTS = (
    2432, 2160, 2140, 1587, 1510, 1335, 1313, 1044, 1023, 950, 947, 935, 893, 885, 803, 747,
    711, 683, 675, 593, 503, 455, 443, 367, 360, 354, 342, 333, 304, 234, 37, 30, 18, 8, 8, 7,
    6, 5, 5, 4, 4, 3, 3, 3, *([2] * 9), *([1] * 65),
)
#: onehot_feat3 (1471 categories) and onehot_feat8 (454): count of the category at a given
#: popularity rank; ranks in between are interpolated in log space.
ONEHOT_RANK_PROFILE = {
    3: (1471, ((1, 1105), (2, 634), (3, 602), (4, 550), (5, 449), (7, 418), (9, 296),
               (11, 249), (15, 195), (20, 181), (26, 165), (34, 127), (44, 107), (58, 92),
               (75, 76), (99, 66), (129, 52), (169, 41), (222, 30), (291, 22), (381, 14),
               (499, 8), (654, 5), (857, 2), (1123, 1), (1471, 1))),
    8: (454, ((1, 503), (2, 372), (3, 347), (6, 346), (8, 333), (10, 314), (12, 311),
              (15, 284), (19, 267), (24, 210), (30, 180), (38, 155), (47, 133), (59, 121),
              (74, 111), (93, 95), (117, 84), (146, 67), (183, 51), (230, 36), (289, 20),
              (362, 3), (454, 1))),
}
#: NaN counts: onehot_feat4 has 874 NaN rows; onehot_feat12..17 share the same 714 NaN rows.
ONEHOT4_NAN_RATE = 874 / N_REAL_USERS
ONEHOT12_17_NAN_RATE = 714 / N_REAL_USERS
#: P(value == 1) of the binary onehot_feat12..17 among non-NaN rows.
ONEHOT12_17_RATE = (0.7239, 0.0682, 0.1191, 0.0227, 0.0404, 0.0145)

# --------------------------------------------------------------------------------------------
# Video features (Pure features: video_features_basic_pure.csv, 7,583 rows)
# --------------------------------------------------------------------------------------------

#: upload_type -> (count, NaN video_duration count, music_id == 0 count,
#: duration percentiles at DURATION_PERCENTILES in ms, or None when always NaN).
DURATION_PERCENTILES = (0, 5, 25, 50, 75, 95, 100)
UPLOAD_TYPES = {
    "LongImport": (2925, 0, 24, (20066, 23679, 44233, 81266, 138280, 286132, 786466)),
    "Web": (2416, 0, 60, (6520, 16085, 59020, 108493, 182507, 359757, 1177720)),
    "ShortImport": (917, 23, 22, (5000, 7200, 10100, 12900, 16124, 19233, 20000)),
    "Kmovie": (879, 0, 1, (5047, 14700, 65749, 101400, 178241, 322223, 775066)),
    "LongPicture": (143, 143, 1, None),
    "UNKNOWN": (80, 0, 78, (10388, 22181, 76554, 115565, 164395, 260609, 291850)),
    "PictureSet": (73, 73, 0, None),
    "LongCamera": (64, 0, 0, (20500, 23398, 38149, 72449, 122376, 254595, 300100)),
    "ShortCamera": (43, 0, 0, (7566, 7822, 10688, 14704, 16791, 19380, 19800)),
    "ShareFromOtherApp": (29, 0, 18, (14233, 27286, 58958, 76640, 86840, 208995, 275760)),
    "FollowShoot": (10, 0, 0, (12268, 12282, 16035, 19866, 34428, 60820, 69633)),
    "AiCutVideo": (2, 0, 0, (30883, 44273, 97837, 164791, 231745, 285309, 298700)),
    "PhotoCopy": (1, 0, 0, (10500,) * 7),
    "LipsSync": (1, 0, 0, (16541,) * 7),
}
#: video_type: 76 of the 80 upload_type == UNKNOWN videos are AD; one video is UNKNOWN.
AD_RATE_GIVEN_UNKNOWN_UPLOAD = 76 / 80
UNKNOWN_VIDEO_TYPE_RATE = 1 / N_REAL_VIDEOS
UPLOAD_DT_COUNTS = {"2022-04-09": 2832, "2022-04-10": 3424, "2022-04-11": 1327}
#: (server_width, server_height) pairs with their counts; the remaining videos get other sizes.
SERVER_DIMS_COUNTS = {
    (720, 1280): 5090, (1280, 720): 1367, (960, 720): 179, (720, 1282): 114, (720, 960): 90,
    (720, 720): 59, (1080, 1440): 48, (1080, 720): 38, (1030, 720): 25, (1440, 1440): 22,
    (810, 1440): 20, (1080, 1080): 18, (540, 960): 17, (720, 1556): 17, (576, 1024): 15,
    (1048, 720): 12, (720, 1440): 11, (720, 1170): 11, (664, 1440): 10, (1088, 720): 9,
    (1106, 720): 9, (1172, 720): 8, (1600, 720): 7, (1400, 720): 6, (720, 1560): 6,
}
SERVER_DIMS_OTHER = N_REAL_VIDEOS - sum(SERVER_DIMS_COUNTS.values())
#: music_type among videos with music_id != 0; music_id == 0 <=> music_type NaN.
MUSIC_TYPE_COUNTS = {9.0: 6665, 4.0: 657, 8.0: 41, 7.0: 14, 11.0: 3}
#: tag strings (as written, first tag first) with their counts; 96 videos have no tag.
TAG_COMBO_COUNTS = (
    "39:815 3:651 9:418 6:378 20:344 7:340 39,68:328 12:307 39,43:293 2:289 15:242 17:220 "
    "1:213 12,62:193 11:174 28:145 20,43:135 8:135 25:128 20,68:98 20,67:96 19:96 12,60:92 "
    "4:90 3,62:76 62,4:63 26:60 18:59 5:55 38:54 10:51 14:43 8,67:42 62,7:41 36:41 24:41 "
    "21:41 1,62:41 27:38 22:37 10,60:36 29:35 34:35 35:33 30:31 13:30 5,42:23 67,6:21 "
    "42,18:19 62,18:15 62,5:13 16:13 26,62:12 67,4:11 37:11 26,67:9 42,4:9 62,27:8 62,2:7 "
    "12,65,60:7 27,42:5 65,36:5 40,39:5 67,34:5 56,39:4 67,11:4 62,42,18:4 62,16:3 25,65:3 "
    "67,19:3 15,67:3 5,65:3 23:3 25,54:3 27,67:3 3,67:3 67,7:2 25,67:2 65,42,18:2 5,42,60:2 "
    "13,62:2 65,18:2 65,4:2 5,54:2 12,65:2 65,11:2 62,5,42:2 62,10,60:2 12,62,60:2 "
    "12,54,60:1 20,67,68:1 5,65,42:1 62,27,42:1 13,65:1 3,42:1 12,62,42:1 68,6:1 65,27,42:1 "
    "39,9:1 26,65:1 20,54:1 5,67:1 3,62,42:1 62,65,4:1 42,60,18:1 62,42,4:1 27,54:1 "
    "27,42,54:1 11,60:1 12,54:1"
)
TAG_NAN_COUNT = 96
#: author_id range per the official README ([0, 8839734]).
AUTHOR_ID_MAX = 8839734

# --------------------------------------------------------------------------------------------
# Logs (27K stats) and label-model constants
# --------------------------------------------------------------------------------------------

#: tab -> (standard-log exposures, is_click rate, active users) over 2022-04-08..05-08.
TAB_STATS = {
    0: (63923841, 0.11598, 26458), 1: (215925023, 0.44364, 27088),
    2: (9949649, 0.42421, 4536), 3: (957605, 0.02114, 17674),
    4: (24510543, 0.54448, 22219), 5: (429129, 0.23651, 2713),
    6: (5268393, 0.17772, 22626), 7: (114704, 0.44139, 1915),
    8: (478050, 0.04048, 4348), 9: (60678, 0.99234, 2081),
    10: (23722, 0.99966, 1281), 11: (217754, 0.00059, 358),
    12: (332086, 0.12237, 2389), 13: (72217, 0.36306, 95), 14: (14991, 0.00027, 55),
}
#: Random log (is_rand = 1): tab -> (exposures, is_click rate).
RANDOM_TAB_STATS = {1: (1178025, 0.17729), 2: (764, 0.11387), 11: (6755, 0.0), 14: (515, 0.0)}
#: Floor/ceiling on calibration targets (a rate of exactly 0 or 1 has no finite intercept).
MIN_RATE = 1e-4

#: Target overall rates of the labels other than is_click. ASSUMPTIONS: plausible values for
#: short-video feeds; the real per-tab rates of these labels are not public.
TARGET_RATES = {
    "long_view": 0.25, "is_like": 0.015, "is_follow": 0.002, "is_comment": 0.003,
    "is_forward": 0.002, "is_hate": 0.0005, "is_profile_enter": 0.012,
}

#: Hour-of-day exposure profile (Beijing time). ASSUMPTION: a typical short-video diurnal
#: curve (night trough, lunch and evening peaks); no hourly statistics are public.
HOUR_WEIGHTS = (2.6, 1.6, 1.0, 0.7, 0.6, 0.8, 1.5, 2.6, 3.4, 3.7, 3.9, 4.3, 5.0, 5.0, 4.4,
                4.3, 4.4, 4.8, 5.3, 6.2, 7.0, 7.3, 6.6, 4.6)

#: Per-tab weights (lamU, lamI, lamA) of the user-side propensity, the item-side propensity
#: and the user-item affinity. ASSUMPTION, chosen so that domains differ: tab 0 leans on the
#: item side, tab 1 on affinity, tab 2 mostly affinity, tab 4 on the user side.
TAB_LAMBDA = {
    0: (0.6, 1.3, 0.7), 1: (1.0, 0.8, 1.2), 2: (0.7, 0.6, 1.6), 3: (1.2, 0.5, 0.6),
    4: (1.4, 0.7, 0.9), 5: (0.8, 1.0, 1.0), 6: (1.1, 0.9, 0.8), 7: (0.9, 0.9, 1.1),
    8: (1.0, 1.2, 0.6), 9: (0.5, 0.5, 0.5), 10: (0.5, 0.5, 0.5), 11: (0.8, 0.8, 0.8),
    12: (1.0, 1.1, 0.9), 13: (0.9, 1.0, 1.3), 14: (0.8, 0.8, 0.8),
}
#: Per-tab click coefficient of the standardized log duration (others: DEFAULT_DUR_CLICK).
DUR_CLICK = {0: -0.35, 1: 0.15, 2: 0.0, 4: -0.2}
DEFAULT_DUR_CLICK = -0.1
#: Activity multiplier of the exposure volume per user_active_degree.
DEGREE_ACTIVITY = {
    "full_active": 1.6, "high_active": 1.0, "middle_active": 0.5, "2_14_day_new": 0.6,
    "low_active": 0.25, "single_low_active": 0.15, "30day_retention": 0.3, "day_new": 0.3,
    "UNKNOWN": 0.3,
}
#: Label-model effect of user_active_degree (scaled per task by W_DEG).
DEGREE_EFFECT = {
    "full_active": 0.30, "high_active": 0.10, "middle_active": -0.05, "2_14_day_new": -0.10,
    "low_active": -0.30, "single_low_active": -0.40, "30day_retention": -0.20,
    "day_new": -0.20, "UNKNOWN": 0.0,
}

LATENT_DIM = 8
N_POLICY_CANDIDATES = 3  # standard feeds show the best-scored of this many candidates
# Per-task weights, in TASKS order: click, like, follow, comment, forward, hate, long_view.
SIG_USER = np.array([0.6, 0.9, 0.9, 1.0, 1.0, 0.9, 0.6])    # std of per-user propensity
SIG_AUTHOR = np.array([0.4, 0.6, 0.8, 0.6, 0.6, 0.6, 0.4])  # std of per-author propensity
SIG_VIDEO = np.array([0.3, 0.4, 0.3, 0.4, 0.4, 0.5, 0.3])   # std of per-video propensity
# Loading of each entity's propensity on one engagement factor shared by the tasks; the rest,
# sqrt(1 - rho^2), is the entity's own per-task part. Version 3: 0.9 (hate -0.9: users and
# videos that engage less are hated more), so a rare task's propensity is mostly learnable
# from the entity's dense clicks and long views (version 2: 0.5, hate 0; see docs/generator.md).
RHO_SHARED = np.array([0.9, 0.9, 0.9, 0.9, 0.9, -0.9, 0.9])
W_AFF = np.array([1.0, 0.7, 0.6, 0.5, 0.5, -0.7, 0.8])
W_DEG = np.array([1.0, 0.6, 0.4, 0.5, 0.4, -0.3, 0.8])
W_F1 = np.array([1.0, 0.5, 0.3, 0.3, 0.3, 0.0, 0.8])
W_TAG = np.array([1.0, 0.6, 0.3, 0.5, 0.5, -0.5, 0.7])
W_AD = np.array([-0.6, -1.0, -1.0, -0.5, -0.5, 1.0, -0.5])
W_DUR = np.array([np.nan, 0.1, 0.0, 0.0, 0.0, 0.0, -0.6])   # click column is per tab
W_FOLLOWS = np.array([0.0, 0.1, 0.3, 0.0, 0.0, 0.0, 0.0])   # log follow_user_num
W_AUTHOR_USER = np.array([0.0, 0.0, 0.0, 0.2, 0.1, 0.0, 0.0])  # is_video_author
W_HOUR = np.array([0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1])     # evening peak
# User-video affinity P.G.(Q + R): the weights of the side-feature part (onehot_feat2 for users,
# the first tag for videos) and of the entity's own part. Version 3 leans on the side features
# (0.75 / 0.45 for users, 0.7 / 0.5 for videos, 0.4 for authors; version 2: 0.6 / 0.8 and 0.5),
# so an 8-d taste is not all to be learned from a user's few dozen rows.
P_FEAT, P_OWN = 0.75, 0.45
Q_FEAT, Q_OWN = 0.7, 0.5
R_OWN = 0.4
# PPNet structure: each user's own per-task weighting of the item side (ASSUMPTION: a plausible
# shape, not measured; see docs/generator.md). Weights have PPNet's gate form 2*sigmoid(g), so
# they stay in (0, 2): g_user[u,t] = SCALE_DEG[t]*DEGREE_SCALE[deg[u]] + SCALE_AUTHOR[t]*
# (is_video_author[u] - 0.8) + SIG_SCALE[t]*(cos(STYLE_ANGLE[t])*z1_u + sin(STYLE_ANGLE[t])*z2_u)
# + SIG_SCALE_OWN*z_ut: two per-user styles that each task loads at its own angle (task-specific,
# yet identifiable from the user's dense clicks and long views), plus a small own part.
DEGREE_SCALE = {
    "full_active": 0.6, "high_active": 0.2, "middle_active": -0.4, "2_14_day_new": -0.8,
    "low_active": -1.0, "single_low_active": -1.2, "30day_retention": -0.8, "day_new": -0.8,
    "UNKNOWN": 0.0,
}
SCALE_DEG = np.array([1.0, -0.8, 0.6, -1.0, 0.5, 1.0, 0.8])    # task direction of the degree
SCALE_AUTHOR = np.array([0.0, 0.5, -0.7, 0.8, 0.5, 0.0, 0.0])  # creators weigh content apart
SIG_SCALE = np.array([1.6, 1.8, 1.8, 1.8, 1.8, 1.6, 1.6])     # std of the user's styles' part
STYLE_ANGLE = np.deg2rad([0.0, 45.0, 120.0, 90.0, 60.0, 180.0, 75.0])  # each task's mix of styles
SIG_SCALE_OWN = 0.4   # std of the user's own per-task gate logit beyond the styles
K_FROM_M = -0.5       # popularity weight falls as taste weight rises: g_k = -0.5 g_user + ...
SIG_K_OWN = 0.8       # std of the user's own gate logit of the item-propensity weight
RHO_K = 0.9           # ... of which this loading is common to the user's tasks
SIG_SCALE_AUTHOR_ID = 0.8  # author's own gate-logit std (polarizing vs broad-appeal authors)
RHO_SCALE_AUTHOR = 0.9     # ... loading on one factor common to the author's tasks
#: Generator version, stored in generator_meta.json; bump it whenever the same arguments would
#: give different data, so a cached folder from an older generator is not silently reused.
#: 2: truth without unobservable row noise; per-user per-task multipliers; world over all tabs.
#: 3: per-entity effects learnable at KuaiRand-Pure's size (shared engagement factor 0.9, task
#: weights from two per-user styles, affinity leaning on side features).
GENERATOR_VERSION = 3
#: Tabs generated when none are asked for (and the ones prepare.ensure_generated always adds).
DEFAULT_TABS = (0, 1, 2, 4)
#: Chain coefficients (on click, on long_view) of each task's logit.
CHAIN = {
    "long_view": (2.5, 0.0), "is_like": (1.0, 1.8), "is_follow": (1.0, 1.5),
    "is_comment": (1.0, 1.5), "is_forward": (0.8, 1.5), "is_hate": (-1.5, -1.0),
}
LONG_VIEW_MS = 18000  # official README: long_view threshold
VALID_PLAY_MS = 7000  # official README: valid-play threshold

_TI = {t: i for i, t in enumerate(TASKS)}


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[kuairand_synth] {msg}", flush=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _categorical(rng: np.random.Generator, counts: Sequence[float], size: int) -> np.ndarray:
    p = np.asarray(counts, dtype=np.float64)
    return rng.choice(len(p), size=size, p=p / p.sum())


def _distinct_ints(rng: np.random.Generator, low: int, high: int, n: int) -> np.ndarray:
    """``n`` distinct ints in [low, high), in random order (no O(range) allocation)."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        cand = np.concatenate([out, rng.integers(low, high, size=2 * (n - out.size) + 16)])
        _, first = np.unique(cand, return_index=True)
        out = cand[np.sort(first)]
    return out[:n]


def _bucket(values: np.ndarray, column: str) -> np.ndarray:
    bounds, labels = BUCKETS[column]
    idx = np.searchsorted(np.asarray(bounds), values, side="right") - 1
    return np.asarray(labels, dtype=object)[np.clip(idx, 0, len(labels) - 1)]


# --------------------------------------------------------------------------------------------
# Side features
# --------------------------------------------------------------------------------------------


def make_users(rng: np.random.Generator, n_users: int) -> pd.DataFrame:
    """User table with the real columns, formats and marginal frequencies."""
    U = n_users
    deg = _categorical(rng, list(ACTIVE_DEGREE_COUNTS.values()), U)
    deg_names = np.asarray(DEGREES, dtype=object)[deg]
    live_p = np.array([LIVE_STREAMER_RATE[d] for d in DEGREES])[deg]
    author_p = np.array([VIDEO_AUTHOR_RATE[d] for d in DEGREES])[deg]
    df = {
        "user_id": np.arange(U, dtype=np.int64),
        "user_active_degree": deg_names,
        "is_lowactive_period": np.zeros(U, dtype=np.int64),
        "is_live_streamer": np.where(rng.random(U) < live_p, 1, -124).astype(np.int64),
        "is_video_author": (rng.random(U) < author_p).astype(np.int64),
    }
    # Gaussian copula: rank the correlated normals to uniforms, then invert the marginals.
    z = rng.standard_normal((U, 4)) @ np.linalg.cholesky(COUNT_CORR).T
    pct = (np.argsort(np.argsort(z, axis=0), axis=0) + rng.random((U, 4))) / U * 100.0
    for j, col in enumerate(COUNT_QUANTILES):
        logq = np.log1p(np.asarray(COUNT_QUANTILES[col], dtype=np.float64))
        vals = np.rint(np.expm1(np.interp(pct[:, j], COUNT_PERCENTILES, logq))).astype(np.int64)
        df[col] = vals
        df[f"{col}_range"] = _bucket(vals, col)
    for i in range(18):
        name = f"onehot_feat{i}"
        if i in ONEHOT_COUNTS:
            cats = np.asarray(list(ONEHOT_COUNTS[i]))
            vals = cats[_categorical(rng, list(ONEHOT_COUNTS[i].values()), U)]
        elif i == 7:
            perm = rng.permutation(len(ONEHOT7_SORTED_COUNTS))
            vals = perm[_categorical(rng, ONEHOT7_SORTED_COUNTS, U)]
        elif i in ONEHOT_RANK_PROFILE:
            card, prof = ONEHOT_RANK_PROFILE[i]
            ranks, counts = np.asarray(prof, dtype=np.float64).T
            w = np.exp(np.interp(np.log(np.arange(1, card + 1)), np.log(ranks), np.log(counts)))
            vals = rng.permutation(card)[_categorical(rng, w, U)]
        else:  # binary onehot_feat12..17
            vals = (rng.random(U) < ONEHOT12_17_RATE[i - 12]).astype(np.int64)
        df[name] = vals.astype(np.int64)
    f4 = df["onehot_feat4"].astype(np.float64)
    f4[rng.random(U) < ONEHOT4_NAN_RATE] = np.nan
    df["onehot_feat4"] = f4
    nan12 = rng.random(U) < ONEHOT12_17_NAN_RATE
    for i in range(12, 18):
        v = df[f"onehot_feat{i}"].astype(np.float64)
        v[nan12] = np.nan
        df[f"onehot_feat{i}"] = v
    return pd.DataFrame({c: df[c] for c in USER_COLUMNS})


def _tag_table() -> tuple[list[str], np.ndarray]:
    combos, counts = [], []
    for item in TAG_COMBO_COUNTS.split():
        tag, cnt = item.split(":")
        combos.append(tag)
        counts.append(int(cnt))
    return combos, np.asarray(counts, dtype=np.float64)


#: The 46 distinct tag ids, sorted; index len(ALL_TAGS) means "no tag".
ALL_TAGS = tuple(sorted({int(t) for c in _tag_table()[0] for t in c.split(",")}))


def make_videos(rng: np.random.Generator, n_videos: int, n_authors: int) -> pd.DataFrame:
    """Video table with the real columns, formats and marginal frequencies."""
    V, A = n_videos, n_authors
    names = list(UPLOAD_TYPES)
    ut = _categorical(rng, [UPLOAD_TYPES[n][0] for n in names], V)
    ut_names = np.asarray(names, dtype=object)[ut]
    vtype = np.full(V, "NORMAL", dtype=object)
    unk = ut_names == "UNKNOWN"
    vtype[unk & (rng.random(V) < AD_RATE_GIVEN_UNKNOWN_UPLOAD)] = "AD"
    vtype[(vtype == "NORMAL") & (rng.random(V) < UNKNOWN_VIDEO_TYPE_RATE)] = "UNKNOWN"
    dts = list(UPLOAD_DT_COUNTS)
    upload_dt = np.asarray(dts, dtype=object)[_categorical(rng, list(UPLOAD_DT_COUNTS.values()), V)]

    dur = np.full(V, np.nan)
    music_zero = np.zeros(V, dtype=bool)
    u_dur, u_nan, u_mus = rng.random(V) * 100.0, rng.random(V), rng.random(V)
    for k, name in enumerate(names):
        cnt, n_nan, n_mus0, q = UPLOAD_TYPES[name]
        m = ut == k
        music_zero[m] = u_mus[m] < n_mus0 / cnt
        if q is None:
            continue
        d = np.rint(np.exp(np.interp(u_dur[m], DURATION_PERCENTILES, np.log(q))))
        d[u_nan[m] < n_nan / cnt] = np.nan
        dur[m] = d

    dims = list(SERVER_DIMS_COUNTS)
    di = _categorical(rng, list(SERVER_DIMS_COUNTS.values()) + [SERVER_DIMS_OTHER], V)
    other = di == len(dims)
    wh = np.asarray(dims + [(0, 0)], dtype=np.float64)[di]
    n_other = int(other.sum())
    wh[other, 0] = 2 * rng.integers(135, 1201, size=n_other)
    wh[other, 1] = 2 * rng.integers(224, 1201, size=n_other)

    # Music: ~96% of videos have their own track, the rest reuse a few popular ones.
    music_id = np.where(rng.random(V) < 0.8, _distinct_ints(rng, 9_135_000_000, 9_170_300_000, V),
                        _distinct_ints(rng, 30_000, 9_135_000_000, V))
    reuse = rng.random(V) < 0.04
    pop = music_id[: max(1, V // 50)]
    music_id[reuse] = pop[rng.integers(0, pop.size, size=int(reuse.sum()))]
    music_zero |= vtype == "AD"
    music_id[music_zero] = 0
    mt = np.asarray(list(MUSIC_TYPE_COUNTS), dtype=np.float64)
    music_type = mt[_categorical(rng, list(MUSIC_TYPE_COUNTS.values()), V)]
    music_type[music_zero] = np.nan

    combos, counts = _tag_table()
    ti = _categorical(rng, np.append(counts, TAG_NAN_COUNT), V)
    tag = np.asarray(combos + [np.nan], dtype=object)[ti]

    # Authors: every author has at least one video; the rest follow a heavy-tailed
    # productivity (real Pure: 7,583 videos by 6,510 authors, one author with 26).
    author_ids = _distinct_ints(rng, 0, AUTHOR_ID_MAX + 1, A)
    extra = rng.choice(A, size=V - A, p=_normalize(rng.lognormal(0.0, 1.2, A)))
    author_of = rng.permutation(np.concatenate([np.arange(A), extra]))
    return pd.DataFrame({
        "video_id": np.arange(V, dtype=np.int64),
        "author_id": author_ids[author_of],
        "video_type": vtype,
        "upload_dt": upload_dt,
        "upload_type": ut_names,
        "visible_status": np.zeros(V),
        "video_duration": dur,
        "server_width": wh[:, 0],
        "server_height": wh[:, 1],
        "music_id": music_id.astype(np.int64),
        "music_type": music_type,
        "tag": tag,
    })


def _normalize(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w / w.sum()


def _rms_normalize(m: np.ndarray) -> np.ndarray:
    """Columns scaled to a mean square of 1 (a multiplier then keeps a term's variance)."""
    return m / np.sqrt(np.mean(m ** 2, axis=0, keepdims=True))


# --------------------------------------------------------------------------------------------
# Latent world: per-user / per-video tables of the label model
# --------------------------------------------------------------------------------------------


class _World:
    """Latent parameters, precomputed as per-(entity, tab, task) base-logit tables.

    Built for all 15 tabs whatever tabs are generated, so a tab's parameters do not depend on
    which other tabs share the file.
    """

    def __init__(self, rng: np.random.Generator, users: pd.DataFrame, videos: pd.DataFrame):
        U, V = len(users), len(videos)
        K, T, D = LATENT_DIM, len(TASKS), len(TAB_STATS)
        tabs = tuple(range(D))
        deg = pd.Categorical(users["user_active_degree"], categories=DEGREES).codes
        f1 = users["onehot_feat1"].to_numpy()
        f2 = users["onehot_feat2"].to_numpy()
        first_tag = videos["tag"].map(lambda s: s.split(",")[0] if isinstance(s, str) else -1)
        tag_pos = {t: i for i, t in enumerate(ALL_TAGS)}
        tag1 = np.array([tag_pos.get(int(t), len(ALL_TAGS)) for t in first_tag])
        author_codes, author_of = np.unique(videos["author_id"].to_numpy(), return_inverse=True)
        A = author_codes.size
        self.author_of = author_of

        # Latent factors; user factors lean on onehot_feat2 and video factors on the first tag,
        # so side features carry part of the affinity (cold-start signal).
        P = (P_FEAT * rng.standard_normal((50, K))[f2]
             + P_OWN * rng.standard_normal((U, K)))
        Q = (Q_FEAT * rng.standard_normal((len(ALL_TAGS) + 1, K))[tag1]
             + Q_OWN * rng.standard_normal((V, K)))
        R = R_OWN * rng.standard_normal((A, K))
        self.item_vec = Q + R[author_of]
        gates = np.full((D, K), 0.25)
        gates[:, :2] = 1.0
        for i in range(D):
            gates[i, 2 + rng.choice(K - 2, size=3, replace=False)] = 1.4
        self.gates = gates / np.sqrt(1.25 * np.mean(gates ** 2, axis=1, keepdims=True) * K)
        self.user_vec = P

        def effects(n: int, rho: np.ndarray | float) -> np.ndarray:
            shared = rng.standard_normal((n, T))
            own = rng.standard_normal((n, T))
            return rho * shared[:, :1] + np.sqrt(1 - rho ** 2) * own

        BU = SIG_USER * effects(U, RHO_SHARED)
        BA = SIG_AUTHOR * effects(A, RHO_SHARED)
        BV = SIG_VIDEO * effects(V, RHO_SHARED)
        lam = np.array([TAB_LAMBDA[t] for t in tabs])  # D x 3
        self.lam_aff = lam[:, 2]
        f1_eff = 0.5 * rng.normal(0, 0.35, (1, 7)) + 0.85 * rng.normal(0, 0.35, (D, 7))
        tag_eff = 0.5 * rng.normal(0, 0.4, (1, len(ALL_TAGS) + 1)) \
            + 0.85 * rng.normal(0, 0.4, (D, len(ALL_TAGS) + 1))
        deg_eff = np.array([DEGREE_EFFECT[d] for d in DEGREES])[deg]
        follows = np.log1p(users["follow_user_num"].to_numpy(dtype=np.float64))
        follows = (follows - 4.9) / 1.8
        is_author = users["is_video_author"].to_numpy(dtype=np.float64)

        # PPNet structure: per-user, per-task weights of the affinity (m_user) and of the
        # item-side propensity (k_user), tied to user_active_degree, is_video_author and the
        # user id, and per-author weights of the affinity (m_item, via author_id). Each is
        # scaled to a mean square of 1 per task, so the terms keep their average variance.
        styles = rng.standard_normal((U, 2))
        loadings = np.stack([np.cos(STYLE_ANGLE), np.sin(STYLE_ANGLE)])  # 2 x T
        g_user = (SCALE_DEG * np.array([DEGREE_SCALE[d] for d in DEGREES])[deg][:, None]
                  + SCALE_AUTHOR * (is_author[:, None] - 0.8)
                  + SIG_SCALE * (styles @ loadings)
                  + SIG_SCALE_OWN * rng.standard_normal((U, T)))
        self.m_user = _rms_normalize(2 * _sigmoid(g_user))
        self.k_user = _rms_normalize(2 * _sigmoid(K_FROM_M * g_user
                                                  + SIG_K_OWN * effects(U, RHO_K)))
        self.m_item = _rms_normalize(
            2 * _sigmoid(SIG_SCALE_AUTHOR_ID * effects(A, RHO_SCALE_AUTHOR)))[author_of]

        # user part: U x D x T
        up = lam[None, :, 0, None] * BU[:, None, :]
        up = up + (W_DEG * deg_eff[:, None])[:, None, :]
        up = up + W_F1[None, None, :] * f1_eff.T[f1][:, :, None]
        up = up + (W_FOLLOWS * follows[:, None] + W_AUTHOR_USER * is_author[:, None])[:, None, :]
        self.user_part = up

        dur = videos["video_duration"].to_numpy(dtype=np.float64)
        fill = np.rint(rng.uniform(8000, 60000, V))  # picture posts have no duration
        self.duration_ms = np.where(np.isnan(dur), fill, dur).astype(np.int64)
        zdur = (np.log(self.duration_ms) - np.log(60000.0)) / 1.0
        is_ad = (videos["video_type"] == "AD").to_numpy(dtype=np.float64)
        dur_w = np.tile(W_DUR, (D, 1))
        dur_w[:, 0] = [DUR_CLICK.get(t, DEFAULT_DUR_CLICK) for t in tabs]
        # item side: the propensity (weighted per user by k_user) and the rest, V x D x T
        self.item_prop = lam[None, :, 1, None] * (BA[author_of] + BV)[:, None, :]
        ip = W_TAG[None, None, :] * tag_eff.T[tag1][:, :, None]
        ip = ip + dur_w[None, :, :] * zdur[:, None, None]
        ip = ip + (W_AD * is_ad[:, None])[:, None, :]
        self.item_rest = ip

        # Exposure volume: activity x per-tab participation (27K stats: active users per tab).
        act = np.array([DEGREE_ACTIVITY[d] for d in DEGREES])[deg] * rng.lognormal(0, 0.8, U)
        part = np.empty((U, D))
        for i, t in enumerate(tabs):
            ratio = TAB_STATS[t][2] / N_REAL_USERS
            on = rng.random(U) < ratio
            if not on.any():
                on[rng.integers(U)] = True
            part[:, i] = on * rng.lognormal(0, 0.7, U)
        self.user_weight = act[:, None] * part
        # Video popularity (lognormal, Gini ~0.5 like the 27K standard logs); ads shown less.
        self.video_pop = _normalize(rng.lognormal(0, 1.0, V) * np.where(is_ad > 0, 0.3, 1.0))

    def affinity(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.einsum("nk,nk->n", self.user_vec[u] * self.gates[d], self.item_vec[v])

    def click_score(self, u: np.ndarray, v: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The item-dependent part of the click logit (what the feed policy ranks by)."""
        return (self.lam_aff[d] * self.m_user[u, 0] * self.m_item[v, 0] * self.affinity(u, v, d)
                + self.k_user[u, 0] * self.item_prop[v, d, 0])

    def logits(self, u: np.ndarray, v: np.ndarray, d: np.ndarray,
               hour: np.ndarray) -> np.ndarray:
        """Base logits (n x tasks, no intercepts): a function of what a model can observe."""
        s = self.user_part[u, d] + self.item_rest[v, d]
        s += self.k_user[u] * self.item_prop[v, d]
        aff = (self.lam_aff[d] * self.affinity(u, v, d))[:, None]
        s += aff * W_AFF * self.m_user[u] * self.m_item[v]
        s += W_HOUR[None, :] * np.cos(2 * np.pi * (hour - 21) / 24.0)[:, None]
        return s

    def latent_arrays(self, tabs: Sequence[int]) -> dict[str, np.ndarray]:
        """The tables the truth is computed from, for the generated tabs (saved under
        truth/latent/ so a test or an analysis can recompute every probability)."""
        t = np.asarray(tabs)
        return {"tabs": t, "user_part": self.user_part[:, t], "item_rest": self.item_rest[:, t],
                "item_prop": self.item_prop[:, t], "k_user": self.k_user,
                "m_user": self.m_user, "m_item": self.m_item, "user_vec": self.user_vec,
                "item_vec": self.item_vec, "gates": self.gates[t], "lam_aff": self.lam_aff[t],
                "w_aff": W_AFF, "w_hour": W_HOUR}


# --------------------------------------------------------------------------------------------
# Rows, calibration, labels
# --------------------------------------------------------------------------------------------


class _Rows:
    """Exposure skeleton of one log file plus its base logits (no intercepts)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _sample_rows(rng: np.random.Generator, world: _World, n: int, start: _dt.date, days: int,
                 tab_shares: dict[int, float], is_rand: bool) -> _Rows:
    tabs = np.asarray(list(tab_shares))
    counts = rng.multinomial(n, _normalize(list(tab_shares.values())))
    tab = np.repeat(tabs, counts).astype(np.int64)
    U, V = world.user_weight.shape[0], world.video_pop.size
    user = np.empty(n, dtype=np.int64)
    off = 0
    for t, c in zip(tabs, counts):
        w = _normalize(world.user_weight[:, t])
        user[off:off + c] = rng.choice(U, size=c, p=w)
        off += c
    if is_rand:  # random exposure: uniform over the candidate pool
        video = rng.integers(0, V, size=n)
    else:  # standard feed: the best of a few popularity-drawn candidates by a noisy policy score
        cand = rng.choice(V, size=(n, N_POLICY_CANDIDATES), p=world.video_pop)
        score = np.empty(cand.shape)
        for j in range(N_POLICY_CANDIDATES):
            score[:, j] = world.click_score(user, cand[:, j], tab) + rng.standard_normal(n)
        video = cand[np.arange(n), np.argmax(score, axis=1)]
    day = rng.integers(0, days, size=n)
    hour = _categorical(rng, HOUR_WEIGHTS, n)
    midnight = np.array([
        (_dt.datetime(s.year, s.month, s.day, tzinfo=_dt.timezone.utc)
         - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)).total_seconds() * 1000
        for s in (start + _dt.timedelta(days=k) for k in range(days))
    ], dtype=np.int64) - BEIJING_UTC_OFFSET_MS
    time_ms = midnight[day] + hour * 3_600_000 + rng.integers(0, 3_600_000, size=n)
    order = np.lexsort((time_ms, user))
    user, video, tab, day, hour, time_ms = (
        a[order] for a in (user, video, tab, day, hour, time_ms))
    date_int = np.array([int((start + _dt.timedelta(days=k)).strftime("%Y%m%d"))
                         for k in range(days)], dtype=np.int64)[day]
    # No row-level noise: the truth must be what a model can reach from the row's features.
    base = world.logits(user, video, tab, hour)
    # hourmin = Beijing hour x 100, minutes dropped (official README example: a time_ms at
    # 04:16 Beijing time has hourmin 400).
    return _Rows(n=n, user=user, video=video, tab=tab, date=date_int,
                 hourmin=(hour * 100).astype(np.int64), time_ms=time_ms, base=base,
                 is_rand=is_rand)


def _lv_given_click(base: np.ndarray, a_lv: float) -> tuple[np.ndarray, np.ndarray]:
    """(P(long_view | click=1), P(long_view | click=0))."""
    zl = a_lv + base[:, _TI["long_view"]]
    return _sigmoid(zl + CHAIN["long_view"][0]), _sigmoid(zl)


def _task_marginal(task: str, a: float, base: np.ndarray, pc: np.ndarray, pl1: np.ndarray,
                   pl0: np.ndarray) -> np.ndarray:
    """P(task) marginalised over the click -> long_view chain (task after long_view)."""
    z = a + base[:, _TI[task]]
    kc, kl = CHAIN[task]
    return (pc * (pl1 * _sigmoid(z + kc + kl) + (1 - pl1) * _sigmoid(z + kc))
            + (1 - pc) * (pl0 * _sigmoid(z + kl) + (1 - pl0) * _sigmoid(z)))


def _chain_marginals(zc: np.ndarray, base: np.ndarray, alpha: dict[str, float]) -> dict:
    """P(task) for every task, marginalised over the click -> long_view chain."""
    pc = _sigmoid(zc)
    pl1, pl0 = _lv_given_click(base, alpha["long_view"])
    out = {"is_click": pc, "long_view": pc * pl1 + (1 - pc) * pl0}
    for t in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        out[t] = _task_marginal(t, alpha[t], base, pc, pl1, pl0)
    return out


def load_latent(out_dir: str) -> dict[str, np.ndarray]:
    """The tables ``truth/latent/*.npy`` of a generated folder (see latent_arrays)."""
    folder = os.path.join(out_dir, "truth", "latent")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no latent tables (only generator version 2 "
                                "folders have them)")
    return {name[:-4]: np.load(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")}


def truth_from_latent(latent: Mapping[str, np.ndarray], intercepts: Mapping, user: np.ndarray,
                      video: np.ndarray, tab: np.ndarray, hourmin: np.ndarray,
                      is_rand: bool = False) -> dict[str, np.ndarray]:
    """The truth of every task for log rows, recomputed from the saved tables and the
    intercepts of generator_meta.json: what ``truth/`` holds, for tables that may have been
    edited (e.g. a structure knocked out to measure how much of the ceiling it carries)."""
    pos = {int(t): i for i, t in enumerate(latent["tabs"])}
    di = np.array([pos[int(t)] for t in tab])
    hour = np.asarray(hourmin) // 100
    aff = latent["lam_aff"][di] * np.einsum(
        "nk,nk->n", latent["user_vec"][user] * latent["gates"][di], latent["item_vec"][video])
    base = (latent["user_part"][user, di] + latent["item_rest"][video, di]
            + latent["k_user"][user] * latent["item_prop"][video, di]
            + aff[:, None] * latent["w_aff"] * latent["m_user"][user] * latent["m_item"][video]
            + latent["w_hour"] * np.cos(2 * np.pi * (hour - 21) / 24.0)[:, None])
    clicks = intercepts["rand_click" if is_rand else "click"]
    a_click = np.array([clicks[str(int(t))] for t in tab])
    alpha = {t: intercepts[t] for t in TASKS if t != "is_click"}
    return _chain_marginals(a_click + base[:, _TI["is_click"]], base, alpha)


def _bisect(f, target: float, lo: float = -30.0, hi: float = 30.0, iters: int = 40) -> float:
    """Intercept ``a`` with mean probability ``f(a) == target`` (f increasing in a)."""
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _calibrate(std: Sequence[_Rows], rnd: Sequence[_Rows], click_target: dict[int, float],
               rand_click_target: dict[int, float], rng: np.random.Generator,
               max_rows: int = 200_000) -> dict:
    """Find all intercepts on (a subsample of) the pooled rows."""
    def pool(rows: Sequence[_Rows]):
        if not rows:
            return None, None
        base = np.concatenate([r.base for r in rows])
        tab = np.concatenate([r.tab for r in rows])
        if len(tab) > max_rows:
            keep = np.sort(rng.choice(len(tab), size=max_rows, replace=False))
            base, tab = base[keep], tab[keep]
        return base, tab

    base, tab = pool(std)
    clip = lambda p: float(np.clip(p, MIN_RATE, 1 - MIN_RATE))  # noqa: E731
    a_click = {}
    for t, target in click_target.items():
        zc = base[tab == t, 0]
        if zc.size == 0:
            a_click[t] = float(np.log(clip(target) / (1 - clip(target))))
            continue
        a_click[t] = _bisect(lambda a: _sigmoid(a + zc).mean(), clip(target))
    lut = np.zeros(len(TAB_STATS))
    for t, a in a_click.items():
        lut[t] = a
    zc_all = lut[tab] + base[:, 0]
    pc = _sigmoid(zc_all)

    def mean_lv(a):
        pl1, pl0 = _lv_given_click(base, a)
        return (pc * pl1 + (1 - pc) * pl0).mean()

    alpha = {"long_view": _bisect(mean_lv, TARGET_RATES["long_view"])}
    pl1, pl0 = _lv_given_click(base, alpha["long_view"])
    for task in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        alpha[task] = _bisect(lambda a, t=task: _task_marginal(t, a, base, pc, pl1, pl0).mean(),
                              TARGET_RATES[task])
    a_rand = {}
    rbase, rtab = pool(rnd)
    for t, target in rand_click_target.items():
        zc = rbase[rtab == t, 0] if rbase is not None else np.empty(0)
        a_rand[t] = (_bisect(lambda a: _sigmoid(a + zc).mean(), clip(target)) if zc.size
                     else float(np.log(clip(target) / (1 - clip(target)))))
    return {"click": a_click, "rand_click": a_rand, **alpha}


def _draw_labels(rng: np.random.Generator, rows: _Rows, calib: dict, world: _World) -> None:
    """Draw the chain of labels and the consistent play/stay times; store the truth."""
    n, base = rows.n, rows.base
    a_click = calib["rand_click"] if rows.is_rand else calib["click"]
    lut = np.zeros(len(TAB_STATS))
    for t, a in a_click.items():
        lut[t] = a
    zc = lut[rows.tab] + base[:, 0]
    alpha = {k: calib[k] for k in CHAIN}
    truth = _chain_marginals(zc, base, alpha)
    rows.truth = np.column_stack([truth[t] for t in TASKS])

    lab = {}
    lab["is_click"] = (rng.random(n) < _sigmoid(zc)).astype(np.int64)
    c = lab["is_click"]
    zl = alpha["long_view"] + base[:, _TI["long_view"]] + CHAIN["long_view"][0] * c
    lab["long_view"] = (rng.random(n) < _sigmoid(zl)).astype(np.int64)
    lv = lab["long_view"]
    for t in ("is_like", "is_follow", "is_comment", "is_forward", "is_hate"):
        a, b = CHAIN[t]
        z = alpha[t] + base[:, _TI[t]] + a * c + b * lv
        lab[t] = (rng.random(n) < _sigmoid(z)).astype(np.int64)
    rows.labels = lab
    # The profile-enter logit; its intercept is calibrated later on the drawn labels.
    rows.z_profile = (0.5 * base[:, _TI["is_follow"]] + 1.0 * c + 0.8 * lv
                      + 2.5 * lab["is_follow"])

    # play_time_ms consistent with long_view (official README: play >= min(duration, 18 s)).
    D = world.duration_ms[rows.video].astype(np.float64)
    T = np.minimum(D, LONG_VIEW_MS)
    u1, u2, u3 = rng.random(n), rng.random(n), rng.random(n)
    replay = np.where(u3 < 0.15, 1.0 + 1.5 * u2, 1.0 + 0.05 * u2)
    frac = rng.beta(1.2, 1.5, n)
    long_play = np.where(D <= LONG_VIEW_MS, D * replay, T + frac * (1.05 * D - T))
    long_play = np.where((D > LONG_VIEW_MS) & (u3 < 0.05), D * (1 + u2), long_play)
    lo = np.minimum(VALID_PLAY_MS, 0.5 * T)
    click_short = lo + u1 * (T - 1 - lo)
    skip = np.where(u2 < 0.55, 0.0, u1 * np.minimum(T - 1, VALID_PLAY_MS))
    play = np.where(lv == 1, np.maximum(np.ceil(long_play), T),
                    np.where(c == 1, np.floor(click_short), np.floor(skip)))
    rows.play_time_ms = play.astype(np.int64)
    rows.duration_ms = D.astype(np.int64)
    # comment_stay_time: always after a comment, sometimes after a long view (browsing).
    browse = (lab["is_comment"] == 1) | ((lv == 1) & (rng.random(n) < 0.03))
    median = np.where(lab["is_comment"] == 1, 20000.0, 8000.0)
    rows.comment_stay_time = np.where(
        browse, np.rint(rng.lognormal(np.log(median), 0.8, n)), 0).astype(np.int64)


def _draw_profile(rng: np.random.Generator, rows: _Rows, a_profile: float) -> None:
    enter = (rng.random(rows.n) < _sigmoid(a_profile + rows.z_profile)).astype(np.int64)
    rows.labels["is_profile_enter"] = enter
    rows.profile_stay_time = np.where(
        enter == 1, np.rint(rng.lognormal(np.log(8000.0), 0.9, rows.n)) + 1, 0).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Fast CSV writing (integer and fixed-point columns assembled as bytes with numpy)
# --------------------------------------------------------------------------------------------


def _int_csv_bytes(cols: Sequence[np.ndarray]) -> bytes:
    """CSV lines of non-negative int columns; same text as ``str(int)`` joined by commas."""
    n = len(cols[0])
    parts, masks = [], []
    for j, c in enumerate(cols):
        c = np.asarray(c, dtype=np.int64)
        if n and c.min() < 0:
            raise ValueError("negative values are not supported")
        w = len(str(int(c.max()))) if n else 1
        digits = np.empty((n, w), dtype=np.uint8)
        ndig = np.ones(n, dtype=np.int64)
        x = c.copy()
        for k in range(w - 1, -1, -1):
            digits[:, k] = 48 + x % 10
            x //= 10
        for k in range(1, w):
            ndig += c >= 10 ** k
        parts.append(digits)
        masks.append(np.arange(w)[None, :] >= (w - ndig)[:, None])
        sep = np.full((n, 1), 10 if j == len(cols) - 1 else 44, dtype=np.uint8)
        parts.append(sep)
        masks.append(np.ones((n, 1), dtype=bool))
    buf = np.concatenate(parts, axis=1)
    mask = np.concatenate(masks, axis=1)
    return buf[mask].tobytes()


def _prob_csv_bytes(p: np.ndarray, decimals: int = 8) -> bytes:
    """CSV lines of probabilities written as ``0.dddddddd`` (clipped into (0, 1))."""
    n, m = p.shape
    scale = 10 ** decimals
    k = np.clip(np.rint(p * scale), 1, scale - 1).astype(np.int64)
    width = 2 + decimals + 1
    buf = np.empty((n, m, width), dtype=np.uint8)
    buf[:, :, 0] = 48
    buf[:, :, 1] = 46
    for d in range(decimals - 1, -1, -1):
        buf[:, :, 2 + d] = 48 + k % 10
        k //= 10
    buf[:, :, -1] = 44
    buf[:, -1, -1] = 10
    return buf.tobytes()


def _write_log(path: str, rows: _Rows, chunk: int = 250_000) -> None:
    cols = {
        "user_id": rows.user, "video_id": rows.video, "date": rows.date,
        "hourmin": rows.hourmin, "time_ms": rows.time_ms, **rows.labels,
        "play_time_ms": rows.play_time_ms, "duration_ms": rows.duration_ms,
        "profile_stay_time": rows.profile_stay_time,
        "comment_stay_time": rows.comment_stay_time,
        "is_rand": np.full(rows.n, int(rows.is_rand), dtype=np.int64), "tab": rows.tab,
    }
    with open(path, "wb") as f:
        f.write((",".join(LOG_COLUMNS) + "\n").encode())
        for s in range(0, rows.n, chunk):
            f.write(_int_csv_bytes([cols[c][s:s + chunk] for c in LOG_COLUMNS]))


def _write_truth(path: str, rows: _Rows, chunk: int = 250_000) -> None:
    with open(path, "wb") as f:
        f.write((",".join(TRUTH_COLUMNS) + "\n").encode())
        for s in range(0, rows.n, chunk):
            f.write(_prob_csv_bytes(rows.truth[s:s + chunk]))


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _parse_tabs(tabs: Iterable[int] | str) -> tuple[int, ...]:
    if isinstance(tabs, str):
        tabs = [int(t) for t in tabs.split(",") if t.strip()]
    out = tuple(sorted(set(int(t) for t in tabs)))
    if not out or any(t not in TAB_STATS for t in out):
        raise ValueError(f"tabs must be a non-empty subset of 0..14, got {tabs!r}")
    return out


def log_file_name(kind: str, period: str, version: str = "pure") -> str:
    """Official file name, e.g. ``log_standard_4_22_to_5_08_pure.csv``."""
    return f"log_{kind}_{period}_{version}.csv"


def generator_args(rows: int, *, users: int = 5000, videos: int = 2000, authors: int = 600,
                   seed: int = 0, tabs: Iterable[int] | str = DEFAULT_TABS,
                   random_rows: int = 0, version: str = "pure") -> dict:
    """Every argument that changes the data, as stored in ``generator_meta.json["args"]``
    (prepare.ensure_generated compares a folder's meta with this before reusing it)."""
    return {"rows": int(rows), "users": int(users), "videos": int(videos),
            "authors": int(authors), "seed": int(seed), "tabs": list(_parse_tabs(tabs)),
            "random_rows": int(random_rows), "version": version,
            "generator_version": GENERATOR_VERSION}


def generate(out_dir: str, rows: int, *, users: int = 5000, videos: int = 2000,
             authors: int = 600, seed: int = 0, tabs: Iterable[int] | str = DEFAULT_TABS,
             random_rows: int = 0, version: str = "pure", progress: bool = True) -> dict:
    """Write a KuaiRand-format dataset to ``out_dir`` and return its summary.

    ``rows`` is the total of the two standard logs, split 14:17 by their day counts. The
    summary (also written to ``generator_meta.json``, last, so a folder with logs but no meta
    is an interrupted or older generation) has the arguments (``generator_args``), the file
    paths, row counts, the realized per-file / per-tab label rates, the calibrated intercepts
    and the ceiling AUC (truth probabilities vs drawn labels) of each task on the
    4_22_to_5_08 file.
    """
    t_start = time.time()
    tabs = _parse_tabs(tabs)
    if rows < 2 or users < 1 or videos < 1 or not 1 <= authors <= videos or random_rows < 0:
        raise ValueError("need rows >= 2, users >= 1, 1 <= authors <= videos, random_rows >= 0")
    if not version.isalnum():
        raise ValueError(f"version must be alphanumeric, got {version!r}")
    meta_path = os.path.join(out_dir, "generator_meta.json")
    if os.path.exists(meta_path):  # rewritten at the end; gone meanwhile, so an interrupted
        os.remove(meta_path)       # run never leaves new logs beside an old meta
    os.makedirs(os.path.join(out_dir, "truth"), exist_ok=True)
    ss = np.random.SeedSequence(seed)
    r_users, r_videos, r_world, r_calib, *r_files = (np.random.default_rng(s)
                                                     for s in ss.spawn(7))

    users_df = make_users(r_users, users)
    videos_df = make_videos(r_videos, videos, authors)
    paths = {
        "user_features": os.path.join(out_dir, f"user_features_{version}.csv"),
        "video_features_basic": os.path.join(out_dir, f"video_features_basic_{version}.csv"),
    }
    users_df.to_csv(paths["user_features"], index=False, lineterminator="\n")
    videos_df.to_csv(paths["video_features_basic"], index=False, lineterminator="\n")
    _log(progress, f"wrote {users} users, {videos} videos ({authors} authors)")

    std_shares = {t: float(TAB_STATS[t][0]) for t in tabs}
    rand_shares = {t: float(RANDOM_TAB_STATS[t][0]) for t in tabs if t in RANDOM_TAB_STATS}
    rand_click = {t: RANDOM_TAB_STATS[t][1] for t in rand_shares}
    if not rand_shares:  # no requested tab occurs in the real random log: reuse the standard
        rand_shares = dict(std_shares)  # shares, with the real random/standard click ratio.
        rand_click = {t: TAB_STATS[t][1] * 0.17616 / 0.37872 for t in tabs}
    world = _World(r_world, users_df, videos_df)
    latent_dir = os.path.join(out_dir, "truth", "latent")
    os.makedirs(latent_dir, exist_ok=True)
    for key, arr in world.latent_arrays(tabs).items():
        np.save(os.path.join(latent_dir, f"{key}.npy"), arr)
    paths["truth/latent"] = latent_dir
    _log(progress, f"latent world ready ({time.time() - t_start:.1f}s since start)")

    n_a = int(round(rows * 14 / 31))
    plan = [("standard", "4_08_to_4_21", n_a, std_shares, False),
            ("standard", "4_22_to_5_08", rows - n_a, std_shares, False)]
    if random_rows:
        plan.append(("random", "4_22_to_5_08", random_rows, rand_shares, True))
    files = []
    for (kind, period, n, shares, is_rand), rng in zip(plan, r_files):
        start, days = PERIODS[period]
        t0 = time.time()
        rws = _sample_rows(rng, world, n, start, days, shares, is_rand)
        files.append((kind, period, rws, rng))
        _log(progress, f"sampled {n:,} rows for log_{kind}_{period} ({time.time() - t0:.1f}s)")

    std_rows = [f[2] for f in files if not f[2].is_rand]
    rnd_rows = [f[2] for f in files if f[2].is_rand]
    t0 = time.time()
    calib = _calibrate(std_rows, rnd_rows, {t: TAB_STATS[t][1] for t in tabs}, rand_click, r_calib)
    _log(progress, f"intercepts calibrated ({time.time() - t0:.1f}s)")
    t0 = time.time()
    for _, _, rws, rng in files:
        _draw_labels(rng, rws, calib, world)
    zp = np.concatenate([r.z_profile for r in std_rows])
    calib["is_profile_enter"] = _bisect(lambda a: _sigmoid(a + zp).mean(),
                                        TARGET_RATES["is_profile_enter"])
    for _, _, rws, rng in files:
        _draw_profile(rng, rws, calib["is_profile_enter"])
    _log(progress, f"labels drawn ({time.time() - t0:.1f}s)")

    summary_rows, rates, tab_rates, oracle = {}, {}, {}, {}
    for kind, period, rws, _ in files:
        name = log_file_name(kind, period, version)
        t0 = time.time()
        paths[name] = os.path.join(out_dir, name)
        _write_log(paths[name], rws)
        _write_truth(os.path.join(out_dir, "truth", name), rws)
        paths[f"truth/{name}"] = os.path.join(out_dir, "truth", name)
        summary_rows[name] = rws.n
        rates[name] = {t: float(rws.labels[t].mean()) for t in LABELS}
        tab_rates[name] = {
            int(t): {"share": float((rws.tab == t).mean()),
                     **{lab: float(rws.labels[lab][rws.tab == t].mean()) for lab in LABELS}}
            for t in np.unique(rws.tab)
        }
        if kind == "standard" and period == "4_22_to_5_08":
            oracle = {t: metrics.auc(rws.labels[t], rws.truth[:, i]) for i, t in enumerate(TASKS)}
        _log(progress, f"wrote {name} ({rws.n:,} rows, {time.time() - t0:.1f}s)")

    summary = {
        "out_dir": os.path.abspath(out_dir),
        "args": generator_args(rows, users=users, videos=videos, authors=authors, seed=seed,
                               tabs=tabs, random_rows=random_rows, version=version),
        "files": paths,
        "rows": summary_rows,
        "target_click_rate": {str(t): TAB_STATS[t][1] for t in tabs},
        "target_rates": dict(TARGET_RATES),
        "rates": rates,
        "tab_rates": {k: {str(t): v for t, v in d.items()} for k, d in tab_rates.items()},
        "oracle_auc": oracle,
        "intercepts": {k: ({str(t): a for t, a in v.items()} if isinstance(v, dict) else v)
                       for k, v in calib.items()},
        "seconds": round(time.time() - t_start, 2),
    }
    meta = {k: v for k, v in summary.items() if k not in ("out_dir", "files", "seconds")}
    meta["files"] = {k: os.path.relpath(v, out_dir) for k, v in paths.items()}
    paths["generator_meta"] = meta_path
    with atomic_write(meta_path) as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    _log(progress, f"done in {summary['seconds']}s; ceiling AUC "
                   + ", ".join(f"{t}={a:.3f}" for t, a in oracle.items()))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pepnet_jax.data.kuairand_synth",
        description="Write a synthetic dataset in the KuaiRand file format, with true "
                    "label probabilities under truth/.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--rows", type=int, required=True,
                    help="rows over the two standard logs (split 14:17 by days)")
    ap.add_argument("--users", type=int, default=5000, help=f"real: {N_REAL_USERS}")
    ap.add_argument("--videos", type=int, default=2000, help=f"real: {N_REAL_VIDEOS}")
    ap.add_argument("--authors", type=int, default=600, help="real Pure pool: 6510")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tabs", default="0,1,2,4", help="comma-separated tabs in 0..14")
    ap.add_argument("--random-rows", type=int, default=0,
                    help="rows of log_random_4_22_to_5_08 (0: not written)")
    ap.add_argument("--version", default="pure", help="file-name suffix (pure, 1k, 27k)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    s = generate(a.out, a.rows, users=a.users, videos=a.videos, authors=a.authors,
                 seed=a.seed, tabs=a.tabs, random_rows=a.random_rows, version=a.version,
                 progress=not a.quiet)
    if not a.quiet:
        for name, r in s["rates"].items():
            print(f"{name}: " + ", ".join(f"{t}={v:.4f}" for t, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
