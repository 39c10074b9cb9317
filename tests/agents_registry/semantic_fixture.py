"""A hand-written market for the semantic quality test: 30 agents and 50 tasks.

Each task names the slug of the agent a sensible poster would pick. The texts are deliberately
worded differently from the agent descriptions (few shared keywords), so the test measures
meaning, not word overlap.
"""

AGENTS: dict[str, str] = {
    "contract-drafter": (
        "Drafts and reviews commercial contracts: NDAs, service agreements, supplier terms and "
        "licence agreements. Flags risky indemnity and liability clauses. Not a law firm."
    ),
    "german-english-translator": (
        "Professional translation between German and English for business documents, manuals "
        "and correspondence, with consistent terminology glossaries."
    ),
    "japanese-localiser": (
        "Localises apps, games and websites into Japanese: UI strings, tone, honorifics, "
        "date and currency formats, and cultural adaptation."
    ),
    "python-test-writer": (
        "Writes automated tests for Python code bases with pytest: unit tests, fixtures, "
        "mocks of external services, and coverage reports."
    ),
    "react-frontend-dev": (
        "Builds web interfaces in React and TypeScript: components, forms, state management, "
        "responsive layouts and accessibility fixes."
    ),
    "sql-tuner": (
        "Speeds up relational databases: reads query plans, adds indexes, rewrites slow SQL "
        "for PostgreSQL and MySQL, and tunes configuration."
    ),
    "data-cleaner": (
        "Cleans and deduplicates messy spreadsheets and CSV exports: fixes encodings, "
        "normalises addresses and phone numbers, merges duplicate rows."
    ),
    "security-auditor": (
        "Audits web applications for vulnerabilities: authentication flaws, injection, XSS, "
        "CSRF, insecure session handling; writes a prioritised findings report."
    ),
    "devops-terraform": (
        "Automates cloud infrastructure with Terraform and Kubernetes on AWS and GCP: "
        "networks, buckets, IAM policies, Helm charts and CI pipelines."
    ),
    "bookkeeper": (
        "Small-business bookkeeping: categorises transactions, reconciles bank accounts, "
        "prepares monthly profit and loss statements and VAT figures."
    ),
    "financial-modeller": (
        "Builds financial models and forecasts in spreadsheets: revenue projections, cash flow, "
        "unit economics, valuation and scenario analysis for startups."
    ),
    "copywriter": (
        "Writes persuasive marketing copy: landing pages, product descriptions, ad headlines "
        "and newsletters in a brand's voice."
    ),
    "seo-strategist": (
        "Improves search engine rankings: keyword research, on-page optimisation, meta tags, "
        "site structure and content gap analysis."
    ),
    "support-triage": (
        "Sorts incoming customer support tickets by topic and urgency, drafts replies from a "
        "knowledge base and escalates angry or complex cases."
    ),
    "podcast-editor": (
        "Edits audio recordings: removes filler words and noise, levels volume, adds intro music "
        "and exports episodes ready for publishing."
    ),
    "transcriber": (
        "Turns speech into text: accurate transcripts of interviews, meetings and lectures with "
        "speaker labels and timestamps."
    ),
    "research-summariser": (
        "Reads scientific papers and long reports and writes concise summaries of methods, "
        "findings and limitations for non-specialists."
    ),
    "grant-writer": (
        "Writes funding applications for non-profits, museums and researchers: narratives, "
        "budgets justification and impact statements."
    ),
    "recruiter": (
        "Screens job candidates: reads CVs, scores them against a role's requirements, and "
        "writes shortlists with interview questions."
    ),
    "route-planner": (
        "Optimises vehicle routing and delivery schedules for fleets: stops, time windows, "
        "capacities and driver shifts."
    ),
    "demand-forecaster": (
        "Forecasts sales and demand from historical data with time-series models, seasonality "
        "and holiday effects, for inventory planning."
    ),
    "invoice-extractor": (
        "Extracts structured data from invoices and receipts, including scanned PDFs: vendor, "
        "dates, line items, tax and totals as JSON."
    ),
    "privacy-compliance": (
        "Checks data protection compliance: GDPR and CCPA gap analysis, privacy policies, "
        "records of processing and data retention rules."
    ),
    "nutrition-planner": (
        "Creates meal plans and recipes for dietary goals: calorie targets, allergies, "
        "vegetarian and diabetic-friendly menus with shopping lists."
    ),
    "math-tutor": (
        "Explains mathematics step by step: algebra, calculus, probability and exam preparation "
        "for high school and university students."
    ),
    "slide-designer": (
        "Turns notes and reports into clear presentation decks with charts, consistent layouts "
        "and speaker notes."
    ),
    "social-media-manager": (
        "Plans and writes social media posts for Instagram, LinkedIn and TikTok with a content "
        "calendar, hashtags and engagement ideas."
    ),
    "image-labeller": (
        "Annotates images for machine learning datasets: bounding boxes, classification labels "
        "and segmentation masks with quality checks."
    ),
    "travel-planner": (
        "Plans trips and itineraries: flights, hotels, day-by-day schedules, budgets and local "
        "tips for holidays and business travel."
    ),
    "carbon-accountant": (
        "Measures greenhouse gas emissions for companies: scope 1, 2 and 3 inventories, "
        "emission factors and sustainability reports."
    ),
}

TASKS: list[tuple[str, str]] = [
    (
        "We need a confidentiality agreement before sharing our roadmap with a vendor",
        "contract-drafter",
    ),
    (
        "Review the liability section of a software services contract we were sent",
        "contract-drafter",
    ),
    ("Put our German user manual for a coffee machine into English", "german-english-translator"),
    ("Turn letters from our Munich supplier into English", "german-english-translator"),
    ("Adapt our mobile game's menus and dialogue for players in Tokyo", "japanese-localiser"),
    ("Our Django payment module has no tests, add some with pytest", "python-test-writer"),
    ("Increase test coverage of a Flask API and mock the Stripe calls", "python-test-writer"),
    (
        "Create a signup form component with validation in our TypeScript web app",
        "react-frontend-dev",
    ),
    ("The dashboard page is broken on phones, make the layout responsive", "react-frontend-dev"),
    ("Our monthly report query on Postgres takes 40 seconds, make it fast", "sql-tuner"),
    ("Figure out which indexes our MySQL orders table is missing", "sql-tuner"),
    (
        "Remove duplicate customers from a 20,000 row Excel export and fix broken accents",
        "data-cleaner",
    ),
    ("Standardise the phone numbers and addresses in our contacts CSV", "data-cleaner"),
    ("Check our login and password reset pages for security holes", "security-auditor"),
    ("Penetration test our web shop before launch", "security-auditor"),
    ("Write infrastructure as code for an S3 bucket and IAM roles", "devops-terraform"),
    ("Set up a Kubernetes deployment with Helm for our API", "devops-terraform"),
    ("Match last quarter's bank statement lines to our accounting records", "bookkeeper"),
    ("Categorise the expenses of my bakery and produce a monthly P&L", "bookkeeper"),
    ("Build a three-year revenue and cash projection for our seed pitch", "financial-modeller"),
    ("Estimate the valuation of our SaaS company under three scenarios", "financial-modeller"),
    ("Write a catchy homepage for our new running shoe brand", "copywriter"),
    ("Product descriptions for 40 handmade candles in a warm tone", "copywriter"),
    ("Get our plumbing company's website to rank higher on Google", "seo-strategist"),
    ("Find keywords our competitors rank for that we don't", "seo-strategist"),
    ("Sort 2,000 customer emails by urgency and draft first answers", "support-triage"),
    ("Clean up the audio of our weekly show: cut the ums and background hum", "podcast-editor"),
    ("Produce a written transcript of a one-hour interview with who said what", "transcriber"),
    ("Type up the minutes from the recording of our board meeting", "transcriber"),
    ("Give me a plain-English digest of this 40-page clinical study", "research-summariser"),
    ("Summarise five machine learning papers on retrieval for my manager", "research-summariser"),
    ("Apply for arts council funding to digitise our museum archive", "grant-writer"),
    ("Write the application for a research foundation grant on soil health", "grant-writer"),
    ("Shortlist the best 10 applicants for a senior backend engineer job", "recruiter"),
    ("Plan the morning stops of our 30 delivery vans across the city", "route-planner"),
    ("Schedule technicians' visits to customers within their time slots", "route-planner"),
    ("Predict how many loaves we'll sell each week next year", "demand-forecaster"),
    ("Forecast ice cream sales for summer so we can order stock", "demand-forecaster"),
    ("Pull the totals and line items out of 300 scanned supplier bills", "invoice-extractor"),
    ("Turn photos of restaurant receipts into structured expense data", "invoice-extractor"),
    ("Is our newsletter sign-up GDPR compliant? Check consent and retention", "privacy-compliance"),
    ("A week of vegetarian dinners under 600 calories with a grocery list", "nutrition-planner"),
    ("Help my daughter understand derivatives before her calculus exam", "math-tutor"),
    ("Explain conditional probability with worked examples", "math-tutor"),
    ("Make a 12-slide pitch deck from our business plan document", "slide-designer"),
    ("A month of LinkedIn and Instagram posts for our coffee roastery", "social-media-manager"),
    ("Draw bounding boxes around pedestrians in 5,000 street photos", "image-labeller"),
    ("Plan a ten-day trip through Portugal on a modest budget", "travel-planner"),
    ("Calculate our company's scope 3 emissions from purchased goods", "carbon-accountant"),
    (
        "Prepare the greenhouse gas inventory for our annual sustainability report",
        "carbon-accountant",
    ),
]
