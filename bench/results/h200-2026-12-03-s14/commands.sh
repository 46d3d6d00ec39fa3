# The fourteenth session's three GPU calls (issue 11), each run by the device tool with carry [".carry"]
# (../shared/gpu/make-carry.sh eval --data) at code dd637fb; each call's log is callN_call.log.
# Two earlier attempts at call 1 got no result (one start refused, one machine taken back mid-call): 206 s of
# the session's 1,800 s of device time.
# Call 1 (cold start), timeout_s 600:
BUDGET=575 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks hellaswag --docs 9000:10042 --json $OUT/lb_hs_9000.json' \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks mmlu --mmlu-subjects professional_medicine formal_logic professional_accounting high_school_computer_science high_school_biology philosophy prehistory moral_disputes elementary_mathematics high_school_macroeconomics --json $OUT/lb_mmlu_b.json'
# Call 2 (warm), timeout_s 600:
BUDGET=570 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks mmlu --mmlu-subjects professional_law --json $OUT/lb_mmlu_law.json' \
  'python3 bench/eval_throughput.py leaderboard --model-dir /tmp/l7 --data-dir .carry/data/english --tasks mmlu --mmlu-subjects econometrics high_school_psychology professional_psychology nutrition miscellaneous moral_scenarios high_school_us_history high_school_european_history high_school_world_history --json $OUT/lb_mmlu_c.json'
# Call 3 (warm), timeout_s 430 (the device time left): group 3, then three subjects of group 4
BUDGET=405 bash bench/gpu_call.sh \
  'python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --reference-subjects business_ethics chinese_history chinese_teacher_qualification college_education electrical_engineering elementary_information_and_technology ethnology global_facts high_school_geography high_school_mathematics high_school_politics human_sexuality marxist_theory philosophy sociology virology world_religions --json $OUT/cmmlu_g3.json' \
  'python3 bench/eval_throughput.py cmmlu --model-dir /tmp/l7 --data-dir .carry/data/cmmlu --reference-subjects chinese_foreign_policy college_actuarial_science modern_chinese --json $OUT/cmmlu_g4a.json'
