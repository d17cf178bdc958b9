"""The real datasets' statistics the generator draws from, and the label model's constants
(sources: the package docstring)."""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

import numpy as np


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
#: Tabs generated when none are asked for (and the ones a run always adds: data/resolve.py).
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
