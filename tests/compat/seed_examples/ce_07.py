flags.DEFINE_string("model", None, "model to run")  # 名前、デフォルト、ヘルプ

run.config.update(flags.FLAGS)  # absl のフラグを config に追加
