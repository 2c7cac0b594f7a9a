from eval.report.build import main

main()
