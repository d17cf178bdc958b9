"""Feature spec: presets validate, and each bad config names the field at fault."""

from __future__ import annotations

import dataclasses

import ml_collections
import pytest

from pepnet_jax.data import formats
from pepnet_jax.data.aliccp import aliccp_features, aliccp_groups
from pepnet_jax.data.kuairand import kuairand_features, kuairand_groups
from pepnet_jax.features import DataSpec, FeatureInfo, FeatureSpec, spec_from_config


def _cfg(**over) -> ml_collections.ConfigDict:
    cfg = dict(format='kuairand', tabs=(0, 1, 2, 4), features=kuairand_features(),
               groups=kuairand_groups(), tasks=('is_click', 'long_view'), group_column='user_id')
    cfg.update(over)
    return ml_collections.ConfigDict(cfg)


def test_kuairand_preset():
    spec = spec_from_config(_cfg())
    names = [f.name for f in spec.features]
    assert names[:4] == ['user_id', 'video_id', 'author_id', 'tab']
    assert spec.feature('tab').shared is False and spec.feature('user_id').shared is True
    assert spec.feature('tag').kind == 'multi' and spec.feature('tag').max_len == 3
    assert spec.feature('duration').kind == 'bucket'
    assert spec.domain_column == 'tab' and spec.domains == (0, 1, 2, 4)
    assert spec.groups['domain'] == ('tab',) and spec.groups['author'] == ('author_id',)
    assert spec.tasks == ('is_click', 'long_view')
    assert len(set(names)) == len(names)


def test_aliccp_preset():
    spec = spec_from_config(ml_collections.ConfigDict(dict(
        format='aliccp', tabs=(1, 2, 3), features=aliccp_features(), groups=aliccp_groups(),
        tasks=('click', 'purchase'))))
    assert spec.domain_column == '301' and spec.group_column == '101'
    assert spec.feature('domain').column == '301' and not spec.feature('domain').shared
    assert sum(f.kind == 'dense' for f in spec.features) == 8


def test_specs_are_frozen_hashable_and_round_trip():
    spec = spec_from_config(_cfg())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.features[0].kind = 'dense'
    assert hash(spec) == hash(spec_from_config(_cfg()))
    assert DataSpec.from_dict(spec.to_dict()) == spec
    info = FeatureInfo('a', 'categorical', 10, 1, True)
    assert hash(info) and info.vocab_size == 10
    assert FeatureSpec('x', 'x', 'categorical').min_count == 1


def test_empty_features_and_groups_mean_the_preset():
    spec = spec_from_config(_cfg(features=[], groups={}))
    assert spec == spec_from_config(_cfg())
    few = [dict(name='user_id', column='user_id', kind='categorical'),
           dict(name='tab', column='tab', kind='categorical', shared=False)]
    spec = spec_from_config(_cfg(features=few, groups={}))
    assert spec.groups == {'domain': ('tab',), 'user': ('user_id',)}


def _feats(**changes_at_3):
    f = kuairand_features()
    f[3] = dict(f[3], **changes_at_3)
    return f


@pytest.mark.parametrize('over, message', [
    (dict(features=_feats(kind='foo')), r"config.data.features\[3\].kind='foo' is not one of "
                                        r"\('categorical', 'multi', 'bucket', 'dense', 'cross'\)"),
    (dict(features=_feats(name='user_id')), r"config.data.features\[3\].name='user_id' duplicates "
                                            r"config.data.features\[0\]"),
    (dict(features=_feats(kind='bucket')), r"config.data.features\[3\].num_buckets=0 must be >= 2"),
    (dict(features=_feats(max_len=4)), r"config.data.features\[3\].max_len=4 only applies"),
    (dict(features=_feats(colour='red')), r"config.data.features\[3\] has unknown option\(s\) \['colour'\]"),
    (dict(features=_feats(transform='sqrt', kind='dense')), r"features\[3\].transform='sqrt'"),
    (dict(features=_feats(min_count=0)), r"config.data.features\[3\]: need .*min_count >= 1"),
    (dict(features=_feats(hash_buckets=100, max_vocab=5)), r"features\[3\]: hash_buckets excludes"),
    (dict(groups=dict(user=('user_id', 'nope'))), r"config.data.groups.user names unknown "
                                                  r"feature 'nope'"),
    (dict(tasks=('is_click', 7)), r"config.data.tasks\[1\]=7 must be a column name"),
    (dict(tasks=('is_click', 'is_click')), r"config.data.tasks\[1\]='is_click' is listed twice"),
    (dict(tabs=(0, 15)), r"config.data.tabs\[1\]=15 is not a kuairand 'tab' value"),
    (dict(tabs=(0, 0)), r"config.data.tabs\[1\]=0 is listed twice"),
    (dict(tabs=(), domains=(0, 1.5)), r"config.data.domains\[1\]=1.5 must be an int or a "
                                      r"non-empty string"),
    (dict(tabs=(0, 1), domains=(0, 2)), r"config.data.domains=\[0, 2\] and config.data.tabs="
                                        r"\[0, 1\] disagree"),
    (dict(group_column='user_id,,tab'), r"config.data.group_column='user_id,,tab' must name"),
    (dict(group_column='user_id,user_id'), r"config.data.group_column=.* names a column twice"),
])
def test_bad_config_names_the_field(over, message):
    with pytest.raises(ValueError, match=message):
        spec_from_config(_cfg(**over))


def test_unknown_format_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"config.data.format='csv' is not a registered data "
                                         r"format; registered: (\[.*\])") as e:
        spec_from_config(_cfg(format='csv'))
    listed = e.value.args[0].split('registered: ', 1)[1].split(']')[0] + ']'
    assert listed == str(formats.names())  # from the registry, whatever it holds
    assert {'kuairand', 'aliccp'} <= set(formats.names())


def test_empty_fields_take_the_format_defaults():
    spec = spec_from_config(ml_collections.ConfigDict(dict(
        format='kuairand', features=[], groups={}, tasks=(), domains=(), tabs=(),
        domain_column='', group_column='')))
    fmt = formats.get('kuairand')
    assert spec.tasks == fmt.tasks and spec.domains == (0, 1, 2, 4) == fmt.domains
    assert (spec.domain_column, spec.group_column) == ('tab', 'user_id')
    assert [f.name for f in spec.features] == [f['name'] for f in kuairand_features()]
    ali = spec_from_config(ml_collections.ConfigDict(dict(format='aliccp')))
    assert ali.tasks == ('click', 'purchase') and ali.domains == (1, 2, 3)
    assert (ali.domain_column, ali.group_column) == ('301', '101')


def test_domains_and_the_tabs_alias():
    """data.tabs is the old name of data.domains: old configs (and config.json files) that
    set it mean the same spec as new ones; the two set differently is an error."""
    new = spec_from_config(_cfg(tabs=(), domains=(1, 4)))
    old = spec_from_config(_cfg(tabs=(1, 4)))  # a config from before data.domains existed
    both = spec_from_config(_cfg(tabs=(1, 4), domains=[1, 4]))
    assert new == old == both and new.domains == (1, 4)
    assert DataSpec.from_dict(old.to_dict()) == new


def test_string_domains_keep_their_type_and_split_at_commas():
    """--config.data.domains=home,search reaches the config as one string."""
    cfg = _cfg(tabs=(), domains=('home,search',), domain_column='scene')
    spec = spec_from_config(cfg)
    assert spec.domains == ('home', 'search') and spec.domain_column == 'scene'
    assert DataSpec.from_dict(spec.to_dict()).domains == ('home', 'search')
    # A column other than the format's own is not held to the format's known values.
    assert spec_from_config(_cfg(tabs=(), domains=(20, 30), domain_column='x')).domains == (20, 30)
    with pytest.raises(ValueError, match=r"config.data.domains\[1\]=1 is listed twice"):
        spec_from_config(_cfg(tabs=(), domains=('1', 1), domain_column='x'))


def test_group_column_combinations_are_canonical():
    spec = spec_from_config(_cfg(group_column=' user_id , tab'))
    assert spec.group_column == 'user_id,tab' and spec.group_columns == ('user_id', 'tab')
    assert spec_from_config(_cfg()).group_columns == ('user_id',)
