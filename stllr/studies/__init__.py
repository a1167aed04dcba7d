"""One module per notebook, named after it; import the one you need
(``from stllr.studies import factor_choices``).

=======================  =====================================================
notebook                 module
=======================  =====================================================
00_quickstart            :mod:`~stllr.studies.quickstart`
02_rule_from_scratch     :mod:`~stllr.studies.rule_from_scratch`
04_online_rules          :mod:`~stllr.studies.online_rules`
05_memory_and_compute    :mod:`~stllr.studies.memory_and_compute`
06_learning_signals      :mod:`~stllr.studies.learning_signals`
07_factor_choices        :mod:`~stllr.studies.factor_choices`
08_accuracy_vs_bptt      :mod:`~stllr.studies.accuracy_vs_bptt`
09_gradient_alignment    :mod:`~stllr.studies.gradient_alignment`
10_event_data            :mod:`~stllr.studies.event_data`
11_conv_event_frames     :mod:`~stllr.studies.conv_event_frames`
12_online_and_your_data  :mod:`~stllr.studies.online_and_your_data`
=======================  =====================================================

Shared by them: :mod:`~stllr.studies.common` (:class:`~stllr.studies.common.StudyConfig`, the
settings of a study; :class:`~stllr.studies.common.DataSpec`, its data; ``Method``, ``RunResult``;
one training run), :mod:`~stllr.studies.sweeps` (the trial runner: settings x seeds, in this
process or in worker processes, resumable) and
:mod:`~stllr.studies.paper` (every number the paper publishes that a notebook cites).
"""
